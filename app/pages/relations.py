import streamlit as st

st.title("relations")
st.info("This page is being built.")
