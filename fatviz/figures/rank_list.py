"""Rank lists as a student reads them in ReID papers: a query, its top gallery entries, its hardest match.

`rank_list_image` draws rows (worst average precision first, the order `fatviz.metrics.rank_lists`
returns): the query framed blue, its top-k gallery images framed green (same identity) or red
(another identity), each with its rank and camera, and at the end of the row the hardest
positive (the last-ranked true match, whose rank sets INP), framed gold. A PIL image, so the
CLI saves it as a PNG and a page shows it as it is.

`rank_list_embedding_figure` shows one query in the embedding (2-D points in, plotly figure out):
the query, its true matches, the wrong entries of its top-k and its hardest positive.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw, ImageFont

from fatviz.errors import FatvizError
from fatviz.figures.style import apply_style
from fatviz.metrics import RankLists

QUERY_COLOUR = "#0072B2"  # blue
MATCH_COLOUR = "#009E73"  # green: same identity
WRONG_COLOUR = "#D55E00"  # red-orange: another identity
HARDEST_COLOUR = "#E6B000"  # gold: the hardest positive
TEXT_COLOUR = "#222222"
FRAME = 3  # frame width, pixels
GAP = 6  # between images
INFO_WIDTH = 200  # the text column at the start of each row
# Text sizes in the image's own pixels. The page shows the image at its column's width, about two
# thirds of its own at 1280 px for ten 64x32 images a row: 22 px is then 15 px on the projector
# (12 px had become 9 px, unreadable from the back row).
SMALL_TEXT, TEXT = 22, 24


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow before 10.1 has one bitmap size only
        return ImageFont.load_default()


def _framed(image: np.ndarray, colour: str, scale: int, width: int = FRAME) -> Image.Image:
    """A display image enlarged `scale` times (nearest neighbour: pixels stay sharp) in a coloured frame."""
    pic = Image.fromarray(image if image.ndim == 3 else np.stack([image] * 3, -1))
    pic = pic.resize((pic.width * scale, pic.height * scale), Image.NEAREST)
    out = Image.new("RGB", (pic.width + 2 * width, pic.height + 2 * width), colour)
    out.paste(pic, (width, width))
    return out


def _ring(draw: ImageDraw.ImageDraw, x: int, y: int, w: int, h: int) -> None:
    """The hardest positive's mark: a gold ring around its (green) frame."""
    draw.rectangle([x - 3, y - 3, x + w + 2, y + h + 2], outline=HARDEST_COLOUR, width=3)


def rank_list_image(lists: RankLists, query_images: np.ndarray, gallery_images: np.ndarray, *,
                    queries: int = 8, query_names: Sequence[str] | None = None,
                    query_cams: Sequence[int] | None = None, gallery_cams: Sequence[int] | None = None,
                    scale: int = 2) -> Image.Image:
    """The first `queries` rows of `lists` (worst AP first) as one RGB image grid."""
    if queries < 1:
        raise FatvizError(f"Show at least one query, got {queries}.")
    if len(lists) == 0:
        raise FatvizError("No query has a true match in the gallery (after removing same-camera entries): "
                          "there is no rank list to draw.")
    rows = min(queries, len(lists))
    k = lists.top.shape[1]
    h, w = (np.asarray(query_images).shape[1] * scale, np.asarray(query_images).shape[2] * scale)
    cell_w, cell_h = w + 2 * FRAME, h + 2 * FRAME
    label_h = SMALL_TEXT + 6  # rank above each image
    row_h = max(label_h + cell_h + SMALL_TEXT + 6, label_h + 5 * (SMALL_TEXT + 4))  # camera below; five info lines
    header_h = TEXT + 14
    sep = 3 * GAP
    x_query = INFO_WIDTH
    x_top = x_query + cell_w + sep
    x_hard = x_top + k * (cell_w + GAP) + sep
    small, text = _font(SMALL_TEXT), _font(TEXT)
    hard_title = "hardest match"
    width = x_hard - GAP + max(cell_w + GAP, int(text.getlength(hard_title)) + GAP + 2)
    canvas = Image.new("RGB", (width, header_h + rows * row_h + GAP), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((GAP, 6), "worst AP first", fill=TEXT_COLOUR, font=text)
    draw.text((x_query, 6), "query", fill=QUERY_COLOUR, font=text)
    draw.text((x_top, 6), f"top {k}: green = same identity, red = another", fill=TEXT_COLOUR, font=text)
    draw.text((x_hard - GAP, 6), hard_title, fill="#8A6A00", font=text)
    for r in range(rows):
        y = header_h + r * row_h
        q = int(lists.query[r])
        name = query_names[q] if query_names is not None else str(q)
        cam = f"  cam {query_cams[q]}" if query_cams is not None else ""
        lines = [f"query {q}", f"id {name}" + (f" · {cam.strip()}" if cam else ""),
                 f"AP {lists.ap[r]:.2f} · INP {lists.inp[r]:.2f}", f"first match: {lists.first_rank[r]}",
                 f"{lists.num_matches[r]} true matches"]
        for i, line in enumerate(lines):
            draw.text((GAP, y + label_h + i * (SMALL_TEXT + 4)), line, fill=TEXT_COLOUR, font=small)
        canvas.paste(_framed(query_images[q], QUERY_COLOUR, scale), (x_query, y + label_h))
        for j in range(k):
            g = int(lists.top[r, j])
            if g < 0:
                continue  # the kept gallery is shorter than k
            x = x_top + j * (cell_w + GAP)
            match = bool(lists.top_match[r, j])
            hardest = g == lists.hardest[r]
            canvas.paste(_framed(gallery_images[g], MATCH_COLOUR if match else WRONG_COLOUR, scale),
                         (x, y + label_h))
            if hardest:
                _ring(draw, x, y + label_h, cell_w, cell_h)
            draw.text((x + 2, y + 2), f"{j + 1}",  # the hardest one's number in gold (its ring says which)
                      fill="#8A6A00" if hardest else TEXT_COLOUR, font=small)
            if gallery_cams is not None:
                draw.text((x + 2, y + label_h + cell_h + 1), f"cam {gallery_cams[g]}", fill="#666666", font=small)
        hard = int(lists.hardest[r])
        canvas.paste(_framed(gallery_images[hard], MATCH_COLOUR, scale), (x_hard, y + label_h))
        _ring(draw, x_hard, y + label_h, cell_w, cell_h)
        draw.text((x_hard + 2, y + 2), f"rank {lists.hardest_rank[r]}", fill="#8A6A00", font=small)
        if gallery_cams is not None:
            draw.text((x_hard + 2, y + label_h + cell_h + 1), f"cam {gallery_cams[hard]}", fill="#666666",
                      font=small)
        draw.line([(x_top - sep // 2, y + label_h), (x_top - sep // 2, y + label_h + cell_h)], fill="#CCCCCC")
        draw.line([(x_hard - sep // 2, y + label_h), (x_hard - sep // 2, y + label_h + cell_h)], fill="#CCCCCC")
    return canvas


def rank_list_embedding_figure(points: np.ndarray, query_idx: np.ndarray, gallery_idx: np.ndarray,
                               gallery_labels: np.ndarray, lists: RankLists, row: int, *,
                               presentation: bool = False) -> go.Figure:
    """One query's rank list in the 2-D embedding: every test point grey, the query, its true matches,
    the wrong entries of its top-k and its hardest positive highlighted.

    `points` are the test split in 2-D; `query_idx` / `gallery_idx` map query and gallery positions
    to its rows; `row` picks the rank list (0 = the worst query).
    """
    if not 0 <= row < len(lists):
        raise FatvizError(f"Rank list {row} does not exist: pick 0..{len(lists) - 1}.")
    q = int(lists.query[row])
    top = lists.top[row][lists.top[row] >= 0]
    match = lists.top_match[row][lists.top[row] >= 0]
    hard = int(lists.hardest[row])
    # Every gallery entry of the query's identity (the hardest match has it), drawn hollow: the
    # same-camera ones among them are removed from the ranking but still sit in the embedding.
    same = np.flatnonzero(gallery_labels == gallery_labels[hard])
    fig = go.Figure()

    def add(idx: np.ndarray, name: str, colour: str, symbol: str, size: int, hover: list[str] | None = None,
            line: str | None = None) -> None:
        xy = points[idx].reshape(-1, 2)
        fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", name=name, text=hover,
                                 hoverinfo="text+name" if hover else "name",
                                 marker={"color": colour, "symbol": symbol, "size": size,
                                         "line": {"color": line or colour, "width": 2 if line else 0}}))

    add(np.arange(len(points)), "other test images", "#CCCCCC", "circle", 5)
    add(gallery_idx[same], "same identity (gallery)", MATCH_COLOUR, "circle-open", 9)
    ranks = {int(g): j + 1 for j, g in enumerate(top)}
    wrong = top[~match]
    add(gallery_idx[wrong], f"wrong in the top {lists.top.shape[1]}", WRONG_COLOUR, "x", 10,
        [f"rank {ranks[int(g)]}" for g in wrong])
    right = top[match]
    add(gallery_idx[right], f"right in the top {lists.top.shape[1]}", MATCH_COLOUR, "circle", 10,
        [f"rank {ranks[int(g)]}" for g in right])
    add(gallery_idx[[hard]], "hardest positive", MATCH_COLOUR, "circle", 14,
        [f"rank {lists.hardest_rank[row]}"], line=HARDEST_COLOUR)
    add(query_idx[[q]], "query", QUERY_COLOUR, "star", 18, [f"query {q}"])
    fig.update_layout(xaxis={"showticklabels": False, "title": ""},
                      yaxis={"showticklabels": False, "title": "", "scaleanchor": "x"},
                      legend={"orientation": "h", "y": -0.05})
    return apply_style(fig, title=f"query {q}: AP {lists.ap[row]:.2f}, INP {lists.inp[row]:.2f}",
                       presentation=presentation, height=520)
