import streamlit as st

st.title("soft_targets")
st.info("This page is being built.")
