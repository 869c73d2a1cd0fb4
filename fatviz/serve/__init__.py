"""Serving: what the app (and the CLI's background jobs) need around the library.

- `jobs`: the job registry (`JobManager`): identical requests share one job, stopped jobs are never saved;
- `job_kinds` and `job_work`: what each kind of job reads, trains, costs and saves;
- `pool`: the worker processes (`WorkerPool`), restarted when one dies;
- `run_store`: finished jobs' run folders; `layouts`: t-SNE/UMAP over epochs in the background;
- `budget`: what a job may cost before it starts; `paths`: which folders a visitor may name;
- `uploads`: your own data, kept per session by content hash.

Nothing here imports Streamlit; the pages import this, never the other way round.
"""
