"""fatviz: the Streamlit app. `streamlit run app.py`"""

import streamlit as st

PAGES = (
    ("pages/home.py", "Home", ":material/home:"),
    ("pages/lesson.py", "Lesson", ":material/co_present:"),
    ("pages/centroid_explorer.py", "Centroid explorer", ":material/scatter_plot:"),
    ("pages/noisy_labels.py", "Noisy labels", ":material/flag:"),
    ("pages/the_bound.py", "The bound", ":material/functions:"),
    ("pages/speed.py", "Speed", ":material/speed:"),
    ("pages/losses.py", "FAT vs triplet", ":material/balance:"),
    ("pages/rank_list.py", "Rank lists", ":material/format_list_numbered:"),
    ("pages/classroom.py", "Classroom", ":material/school:"),
)


def main() -> None:
    """Set up the page and run the navigation."""
    st.set_page_config(page_title="fatviz: the FAT loss, seen", page_icon=":material/scatter_plot:",
                       layout="wide")
    pages = [st.Page(path, title=title, icon=icon, default=(i == 0)) for i, (path, title, icon) in enumerate(PAGES)]
    st.navigation(pages).run()


if __name__ == "__main__":  # `streamlit run app.py` runs this file as __main__; tests import PAGES
    main()
