# CPU image of the kdviz app: docker build -t kdviz . && docker run -p 8501:8501 kdviz
FROM python:3.11-slim
WORKDIR /kdviz
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 KDVIZ_DATA=/data KDVIZ_RUNS=/kdviz/runs
# The CPU build of torch keeps the image small; the app never needs CUDA.
RUN pip install torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu
COPY requirements.txt pyproject.toml README.md ./
RUN grep -v -E '^(torch|torchvision|pytest|pytest-timeout|playwright)' requirements.txt > /tmp/req.txt \
    && pip install -r /tmp/req.txt
COPY kdviz ./kdviz
COPY app ./app
COPY pretrained ./pretrained
# the shipped results (the Compare page's reference tables, the Experiments page) and the server's settings
COPY results ./results
COPY .streamlit ./.streamlit
RUN pip install --no-deps -e .
EXPOSE 8501
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://localhost:8501/_stcore/health')"
CMD ["streamlit", "run", "app/streamlit_app.py", "--server.headless", "true", "--server.port", "8501", "--server.address", "0.0.0.0"]
