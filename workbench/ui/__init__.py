"""The Gradio app: the only package that imports gradio; every handler calls the same core functions as the CLI."""
