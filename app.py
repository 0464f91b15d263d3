"""`python app.py`: the same app as `workbench serve`, on 127.0.0.1."""

from workbench.ui.app import launch

if __name__ == "__main__":
    launch()
