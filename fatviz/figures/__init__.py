"""Pure figure builders: data in, plotly Figure out. Pages draw them; the CLI exports them.

- style: colours per class and per centroid option, projector-sized fonts
- embedding: the animated four-panel embedding scatter (of panels fatviz.projection projected)
- curves: metrics, loss terms, and bound-vs-exact over epochs
- bound: the 2-D teaching view of the triplet bound
- labels: flagged-sample views (kept per round, confusion)
- speed: the loss benchmark's log-log chart
- losses: the losses side by side (accuracy against epoch time, cost per step)
- rank_list: ReID rank lists as an image (query, top gallery entries, hardest match)
"""
