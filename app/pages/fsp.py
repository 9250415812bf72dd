import streamlit as st

st.title("fsp")
st.info("This page is being built.")
