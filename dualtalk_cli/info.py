"""What ``dualtalk info`` reports: versions, renderer, engines and heads."""

from __future__ import annotations

import platform
from importlib import metadata

from dualtalk_cli.version import __version__

_PACKAGES = (
    "numpy", "scipy", "soundfile", "torch", "pyrender", "PyOpenGL", "trimesh",
    "pygltflib",
)  # fmt: skip


def collect_info() -> list[str]:
    """Lines of text describing this installation."""
    lines = [f"dualtalk {__version__}, Python {platform.python_version()}"]
    for package in _PACKAGES:
        try:
            lines.append(f"  {package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            lines.append(f"  {package}: not installed")
    lines.append(f"ffmpeg: {_ffmpeg_version()}")
    lines.append(f"renderer: {_renderer_status()}")
    from dualtalk_cli.engines import available_engines
    from dualtalk_cli.heads import available_heads

    for name, reason in available_engines().items():
        lines.append(f"engine {name}: {'available' if reason is None else reason}")
    lines.append(f"network devices: {_network_devices()}")
    for name, reason in available_heads().items():
        if reason is None:
            from dualtalk_cli.heads import load_head

            reason = f"available, {load_head(name).description}"
        lines.append(f"head {name}: {reason}")
    return lines


def _network_devices() -> str:
    """Where the DualTalk network can run, with each device's default precision."""
    from importlib.util import find_spec

    if find_spec("torch") is None:
        return "none (torch is not installed)"
    import torch

    from dualtalk_cli.engines.devices import default_precision

    devices = [("cpu", "cpu")]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            name = torch.cuda.get_device_name(index)
            devices.append((f"cuda:{index}", f"cuda:{index} ({name})"))
    shown = [
        f"{label}, default precision {default_precision(device)}"
        for device, label in devices
    ]
    if len(devices) == 1:
        shown.append("no CUDA device")
    return "; ".join(shown)


def _ffmpeg_version() -> str:
    try:
        import imageio_ffmpeg

        return (
            f"{imageio_ffmpeg.get_ffmpeg_version()} ({imageio_ffmpeg.get_ffmpeg_exe()})"
        )
    except Exception as error:  # any failure here is what the user needs to see
        return f"not usable ({error})"


def _renderer_status() -> str:
    from dualtalk_cli.errors import RendererUnavailable
    from dualtalk_cli.render import check_renderer

    try:
        return f"ok ({check_renderer()})"
    except RendererUnavailable as error:
        return f"not usable: {error}"
