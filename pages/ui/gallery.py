"""The flagged samples as a gallery (Noisy labels, the Lesson): each image with its given, teacher's
and true label, the teacher's score, and its soft label as a bar row."""

from __future__ import annotations

import streamlit as st

from fatviz.figures.labels import enlarge_to, nearest_rows_text, sample_indices, soft_label_bars

GALLERY_COLUMNS = 8
GALLERY_PIXELS = 112  # each image's longer side, pixel for pixel: about a gallery column at 1280 px


def truth_known(data) -> bool:
    """Whether the true labels are known (a user's own table without true_label: they are not)."""
    return data is None or data.dataset.truth_known


def gallery(rows, total: int, images, names: list[str], soft, kinds, data, per_row: int = GALLERY_COLUMNS) -> None:
    """One gallery of `rows` (of `total`): images with their soft label as a bar row, or a table for vector data."""
    if rows.empty:
        st.caption("No sample here.")
        return
    if images is None:
        columns = ("given_label", "teacher_label", "true_label") if truth_known(data) else ("given_label", "teacher_label")
        frame = rows.assign(**{c: rows[c].map(names.__getitem__) for c in columns})
        if not truth_known(data):
            frame = frame.drop(columns=["true_label", "was_flipped", "noise_kind", "second_label", "outcome"],
                               errors="ignore")
        if data is not None and data.dataset.ids_train is not None:
            ds = data.dataset
            frame.insert(1, "nearest rows", nearest_rows_text(ds.x_train, sample_indices(rows), ds.ids_train,
                                                              data.given_labels, names))
        config = {}
        if soft is not None:
            frame = frame.assign(soft_label=[soft[i].tolist() for i in sample_indices(rows)])
            config = {"soft_label": st.column_config.BarChartColumn("soft label", y_min=0.0, y_max=1.0)}
        st.dataframe(frame, hide_index=True, column_config=config)
        return
    cols = st.columns(per_row)
    for i, (idx, row) in enumerate(zip(sample_indices(rows), rows.itertuples(), strict=False)):
        col = cols[i % per_row]
        truth = f"true {names[row.true_label]} · " if truth_known(data) else ""
        where = f"{row.row_id} · " if hasattr(row, "row_id") else ""
        pair = (getattr(row, "pair_first", -1), getattr(row, "pair_second", -1))
        seen = (f"two people: {names[pair[0]]} and {names[pair[1]]}" if pair[0] >= 0
                else f"teacher {names[row.teacher_label]}")
        col.image(enlarge_to(images[idx], GALLERY_PIXELS),
                  caption=f"{where}given {names[row.given_label]} · {seen} · {truth}p {row.score:.2f}")
        if soft is not None:
            second = getattr(row, "second_label", -1)
            true = (row.true_label,) if second < 0 else (row.true_label, second)
            col.markdown(soft_label_bars(soft[idx], names, row.given_label, kinds[row.Index], true),
                         unsafe_allow_html=True)
    if total > len(rows):
        st.caption(f"Showing {len(rows)} of {total}.")
