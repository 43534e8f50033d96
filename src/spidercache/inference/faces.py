"""Face models: nearest-centroid identification and verification on LFW-format ``pairs.txt``.

``use_centroids(base, images, labels)`` replaces the network's classifier by a
``CentroidClassifier`` whose weights are the mean L2-normalised embedding of
each identity: the base network then answers with the identity whose centroid
is nearest (cosine) to the image's embedding, and GATI's learned caches, which
are trained on the base network's answers, answer with that same nearest
centroid (for the images they are confident about) from an earlier layer.

``verify_pairs(base, pairs_file, root)`` reads LFW's ``pairs.txt``: an optional
header line (``folds pairs_per_fold`` or a count), then ``name i j`` (the same
person, images ``i`` and ``j``) or ``name1 i name2 j`` (two people); image
``i`` of ``name`` is ``root/name/name_%04d.<ext>``. The score of a pair is the
cosine of the two embeddings; accuracy is by k-fold cross-validation over the
folds (the threshold is chosen on the other folds), as LFW's protocol asks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from ..models import CentroidClassifier
from .basemodel import BaseModel

_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


@torch.inference_mode()
def embeddings(
    base: BaseModel, images: np.ndarray, batch_size: int = 256, device: str = "cpu"
) -> torch.Tensor:
    """L2-normalised penultimate-layer embeddings of uint8 images (any size: adapted)."""
    base.model.eval().to(device)
    out = [
        F.normalize(
            base.model(base.preprocess(images[i : i + batch_size]).to(device), return_embedding=True)[1],
            dim=1,
        ).cpu()
        for i in range(0, len(images), batch_size)
    ]
    base.model.cpu()
    return torch.cat(out) if out else torch.empty(0, base.model.embedding_dim)


def use_centroids(base: BaseModel, images: np.ndarray, labels: np.ndarray, device: str = "cpu") -> BaseModel:
    """Make ``base`` a nearest-class-centroid classifier over its embedding (in place; returns it)."""
    emb = embeddings(base, images, device=device)
    labels_t = torch.as_tensor(labels, dtype=torch.long)
    dim = emb.shape[1]
    fc = CentroidClassifier(dim, base.num_classes)
    with torch.no_grad():
        centroids = torch.zeros(base.num_classes, dim).index_add_(0, labels_t, emb)
        counts = torch.bincount(labels_t, minlength=base.num_classes)
        if bool((counts == 0).any()):
            missing = int((counts == 0).sum())
            raise UserError(f"{missing} class(es) have no images to build a centroid from")
        fc.weight.copy_(F.normalize(centroids, dim=1))
    base.model.fc = fc
    base.classifier = "centroid"
    base._fingerprint = None
    return base


def read_pairs(pairs_file: str | Path, root: str | Path) -> tuple[list[tuple[Path, Path, bool]], int]:
    """The pairs of an LFW ``pairs.txt`` as (image, image, same person) and the number of folds."""
    pairs_file, root = Path(pairs_file), Path(root)
    if not pairs_file.is_file():
        raise UserError(f"pairs file not found: {pairs_file}")
    try:
        text = pairs_file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{pairs_file}: not UTF-8 text (byte {exc.start}): not a pairs.txt") from None
    # (line number in the file, its fields): blank lines are skipped but still counted
    lines = [(n, ln.split()) for n, ln in enumerate(text.splitlines(), start=1) if ln.strip()]
    folds = 10
    if lines and all(t.isdigit() for t in lines[0][1]) and len(lines[0][1]) in (1, 2):
        folds = int(lines[0][1][0]) if len(lines[0][1]) == 2 else 1
        lines = lines[1:]

    def image(n: int, name: str, idx: str) -> Path:
        if not idx.isdigit():
            raise UserError(f"{pairs_file} line {n}: image number must be a whole number >= 0, got {idx!r}")
        for ext in _EXTS:
            p = root / name / f"{name}_{int(idx):04d}{ext}"
            if p.is_file():
                return p
        raise UserError(f"{pairs_file}: image {idx} of {name} not found under {root}/{name}/")

    pairs = []
    for n, tok in lines:
        if len(tok) == 3:
            pairs.append((image(n, tok[0], tok[1]), image(n, tok[0], tok[2]), True))
        elif len(tok) == 4:
            pairs.append((image(n, tok[0], tok[1]), image(n, tok[2], tok[3]), False))
        else:
            raise UserError(
                f"{pairs_file} line {n}: expected 'name i j' or 'name1 i name2 j', got {' '.join(tok)!r}"
            )
    if len(pairs) < 2:
        raise UserError(f"{pairs_file}: fewer than 2 pairs")
    return pairs, max(1, min(folds, len(pairs) // 2))


def _read(path: Path, shape: tuple[int, int, int]) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(
            im.convert("L" if shape[0] == 1 else "RGB").resize((shape[2], shape[1]), Image.BILINEAR)
        )
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    candidates = np.unique(scores)
    accs = [np.mean((scores >= t) == same) for t in candidates]
    return float(candidates[int(np.argmax(accs))])


def verify_pairs(base: BaseModel, pairs_file: str | Path, root: str | Path, device: str = "cpu") -> dict:
    """LFW verification accuracy (percent, k-fold) of ``base``'s embeddings on ``pairs_file``."""
    pairs, folds = read_pairs(pairs_file, root)
    paths = sorted({p for a, b, _ in pairs for p in (a, b)})
    index = {p: i for i, p in enumerate(paths)}
    emb = embeddings(base, np.stack([_read(p, base.input_shape) for p in paths]), device=device).numpy()
    scores = np.array([float(emb[index[a]] @ emb[index[b]]) for a, b, _ in pairs])
    same = np.array([s for _, _, s in pairs])
    fold_of = np.arange(len(pairs)) * folds // len(pairs)
    correct = 0
    for k in range(folds):
        test = fold_of == k
        thr = _best_threshold(scores[~test], same[~test]) if folds > 1 else _best_threshold(scores, same)
        correct += int(np.sum((scores[test] >= thr) == same[test]))
    return {
        "pairs": len(pairs),
        "folds": folds,
        "verification_accuracy": 100.0 * correct / len(pairs),
        "mean_same_score": float(scores[same].mean()) if same.any() else None,
        "mean_different_score": float(scores[~same].mean()) if (~same).any() else None,
    }
