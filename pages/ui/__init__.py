"""What the pages share, one module per concern. A package, so that Streamlit's scan of a
`pages/` folder (which lists every pages/*.py as a page) never takes it for one.

- look: the page frame (presentation mode), errors, how an embedding chart is drawn
- routing: a first visit that opens a page directly still goes through app.py's navigation
- sidebar: the settings sidebar, mirrored to and from the URL, and the presets
- live: the job manager, starting and stopping jobs, and the live view of a training
- live_chart, web: the app's browser components (the live embedding chart and its registration)
- uploads: your own data (the upload box and this session's hold on it)
- bound, gallery, benchmark: instruments shared by a page and the Lesson
"""
