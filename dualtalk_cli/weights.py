"""The DualTalk checkpoint: where it is looked for, and fetching it when asked."""

from __future__ import annotations

import os
from pathlib import Path

from dualtalk_cli.errors import DualtalkError, first_line

REPO_ID = "ZiqiaoPeng/DualTalk"  # Hugging Face repository of the released model
CHECKPOINT = "DualTalk.pth"
WEIGHTS_ENV = "DUALTALK_WEIGHTS"
REPO_WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
# 647,237,048 float32 parameters; the file adds pickle overhead on top.
MIN_CHECKPOINT_BYTES = 2_588_948_192


class DownloadError(DualtalkError):
    """The checkpoint could not be fetched."""


def default_folder() -> Path:
    """Where ``dualtalk download`` puts the checkpoint: the repository's weights/."""
    return (
        REPO_WEIGHTS
        if REPO_WEIGHTS.parent.joinpath("pyproject.toml").is_file()
        else (Path.cwd() / "weights")
    )


def download_checkpoint(folder: str | os.PathLike | None = None) -> Path:
    """Fetch DualTalk.pth from the Hub into ``folder``; checked against its size.

    huggingface_hub writes to a temporary name and renames when complete, so an
    interrupted download leaves no partial checkpoint under the final name.
    """
    try:
        from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
        from huggingface_hub.errors import OfflineModeIsEnabled
    except ImportError:
        raise DownloadError(
            "needs huggingface_hub (pip install huggingface_hub)"
        ) from None
    folder = Path(folder) if folder else default_folder()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        metadata = get_hf_file_metadata(hf_hub_url(REPO_ID, CHECKPOINT), timeout=10)
        path = Path(
            hf_hub_download(REPO_ID, CHECKPOINT, local_dir=folder, etag_timeout=10)
        )
    except OfflineModeIsEnabled:
        raise DownloadError(
            f"cannot download {REPO_ID}/{CHECKPOINT}: HF_HUB_OFFLINE is set"
        ) from None
    except Exception as error:  # network stacks raise many types (httpx, OSError)
        reason = first_line(error) or type(error).__name__
        raise DownloadError(
            f"cannot download {REPO_ID}/{CHECKPOINT} (no network?): {reason}"
        ) from None
    size = path.stat().st_size
    expected = metadata.size
    if (expected and size != expected) or size < MIN_CHECKPOINT_BYTES:
        path.unlink(missing_ok=True)
        raise DownloadError(
            f"downloaded {size} bytes, expected {expected or MIN_CHECKPOINT_BYTES}; "
            "removed it, run 'dualtalk download' again",
            path,
        )
    return path
