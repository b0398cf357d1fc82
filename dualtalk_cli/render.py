"""Offscreen rendering of one or two heads side by side (pyrender on EGL).

A Renderer is built once per video. Per frame it only overwrites the heads'
vertex buffers (positions and normals), draws one pyrender scene in one pass,
with each head in its own viewport, and reads the whole frame back once.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from dualtalk_cli.errors import RendererUnavailable
from dualtalk_cli.options import ANTIALIAS, DEFAULT_ANTIALIAS

EGL_PACKAGES = "libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri"

BACKGROUND = (0.93, 0.94, 0.95)  # light grey, slightly cool
HEAD_COLOR = (0.48, 0.48, 0.49, 1.0)  # linear RGBA of heads without vertex colours
AMBIENT = (0.17, 0.17, 0.18)
# Directions the light comes from (x right, y up, z toward the viewer) and its
# intensity: a key light from the upper left, a soft fill from the right and a
# rim light from behind. All white, so skin and vertex colours stay true.
LIGHTS = (((-0.7, 0.6, 1.0), 1.0), ((0.9, 0.1, 0.7), 0.3), ((0.2, 0.5, -1.0), 0.5))
FIELD_OF_VIEW = math.radians(18.0)  # narrow, like a portrait lens: little distortion
MARGIN = 1.12  # the rest pose's bounding box fills 1/MARGIN of its tile


def _unavailable(reason: object) -> RendererUnavailable:
    """The one-line error for a machine where EGL cannot render."""
    if isinstance(reason, BaseException):
        # PyOpenGL packs its message and the loader's into args: keep two.
        reason = ": ".join(str(arg) for arg in reason.args[:2])
    text = str(reason).strip() or "EGL could not be initialised"
    return RendererUnavailable(
        f"cannot render video, offscreen OpenGL (EGL) is unavailable "
        f"({text.splitlines()[0]}); install the Debian packages {EGL_PACKAGES} "
        "or use --no-video, which still works"
    )


@functools.cache
def _pyrender() -> Any:
    """Import pyrender on EGL, or raise RendererUnavailable."""
    # PyOpenGL picks its platform on first import, so this must come first.
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    os.environ.setdefault("PYGLET_HEADLESS", "1")
    platform = os.environ["PYOPENGL_PLATFORM"]
    if platform != "egl":
        raise RendererUnavailable(
            f"cannot render video: PYOPENGL_PLATFORM={platform} is set, but dualtalk "
            "renders with EGL; unset it, or use --no-video"
        )
    try:
        import pyrender
        from pyrender.platforms import egl  # noqa: F401  (this loads libEGL)
    except Exception as error:  # ImportError, OSError, AttributeError, ...
        raise _unavailable(error) from error
    return pyrender


def _create_context(width: int, height: int) -> Any:
    """A pyrender EGL platform whose (headless) GL context is current."""
    _pyrender()
    from pyrender.platforms import egl

    try:
        device = egl.get_device_by_index(int(os.environ.get("EGL_DEVICE_ID", "0")))
        platform = egl.EGLPlatform(width, height, device=device)
        platform.init_context()
        platform.make_current()
    except Exception as error:  # pyrender asserts on EGL failures: no message
        raise _unavailable(error) from error
    return platform


def _delete_context(platform: Any) -> None:
    """Destroy the platform's GL context, but keep the EGL display alive.

    pyrender's ``delete_context`` (also run when a platform is garbage
    collected) terminates the display, which every context in the process
    shares: it would kill any other Renderer's context. Forgetting the display
    makes pyrender's version do nothing.
    """
    from OpenGL import EGL

    display, context = platform._egl_display, platform._egl_context
    platform._egl_display = platform._egl_context = None
    EGL.eglMakeCurrent(
        display, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE, EGL.EGL_NO_CONTEXT
    )
    EGL.eglDestroyContext(display, context)


def check_renderer() -> str:
    """Create a tiny GL context and describe it in one line, or raise."""
    platform = _create_context(8, 8)
    try:
        from OpenGL import GL

        renderer, version, vendor = (
            (GL.glGetString(name) or b"?").decode()
            for name in (GL.GL_RENDERER, GL.GL_VERSION, GL.GL_VENDOR)
        )
        return f"{renderer}, OpenGL {version} ({vendor}, EGL)"
    finally:
        _delete_context(platform)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) float32 unit normals: the area-weighted mean of adjacent faces."""
    v0, v1, v2 = (vertices[faces[:, k]] for k in range(3))
    face_normals = np.cross(v1 - v0, v2 - v0)  # its length, 2 x area, is the weight
    corners = faces.T.ravel()  # all first corners, then all second, then third
    weights = np.concatenate([face_normals] * 3)
    normals = np.stack(
        [np.bincount(corners, weights[:, k], len(vertices)) for k in range(3)], 1
    ).astype(np.float32)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def _outward(faces: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Faces wound so that their normals point out of the mesh.

    The shader dims faces seen from behind (the inside of the mouth), so an
    inside-out mesh would look dark; a negative signed volume reveals one.
    """
    v0, v1, v2 = (vertices[faces[:, k]].astype(np.float64) for k in range(3))
    volume = np.einsum("ij,ij->", v0 - vertices.mean(0), np.cross(v1 - v0, v2 - v0))
    return np.ascontiguousarray(faces[:, ::-1] if volume < 0 else faces)


def srgb_to_linear(colors: np.ndarray) -> np.ndarray:
    """Linear colours from sRGB ones (uint8, or floats in 0..1)."""
    # The shader lights in linear space and converts back to sRGB at the end.
    c = colors.astype(np.float32)
    if np.issubdtype(colors.dtype, np.integer):
        c /= 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _look_from(direction: Sequence[float], distance: float) -> np.ndarray:
    """4x4 pose at ``distance * direction`` whose -z axis looks at the origin."""
    back = np.asarray(direction, float) / np.linalg.norm(direction)
    right = np.cross([0.0, 1.0, 0.0], back)
    right /= np.linalg.norm(right)  # (no light or camera looks straight down)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2] = right, np.cross(back, right), back
    pose[:3, 3] = distance * back
    return pose


# pyrender's physically based shader lights every pixel; on llvmpipe (a CPU
# rasterizer) that made it 4-8x slower than the rest of a frame. These shaders
# read the uniforms pyrender sets (camera, material, directional lights) but
# light per vertex (Gouraud): with ~5,000 vertices a head, that is ~20x fewer
# lighting evaluations than pixels, and smooth heads look the same.
_VERTEX_SHADER = """#version 330 core
layout(location = 0) in vec3 position;
layout(location = 1) in vec3 normal;
#ifdef HAS_COLOR
layout(location = 2) in vec4 color_0;
#endif
struct Material { vec4 base_color_factor; };
struct DirectionalLight { vec3 color; float intensity; vec3 direction; };
uniform Material material;
uniform DirectionalLight directional_lights[8];
uniform int n_directional_lights;
uniform vec3 ambient_light;
uniform vec3 cam_pos;
uniform mat4 M;
uniform mat4 V;
uniform mat4 P;
out vec3 front_color;
out vec3 back_color;

// Lambert diffuse plus a faint Blinn-Phong highlight, returned as sRGB.
vec3 shade(vec3 albedo, vec3 n, vec3 to_camera) {
    vec3 diffuse = ambient_light;
    vec3 highlight = vec3(0.0);
    for (int i = 0; i < n_directional_lights; i++) {
        vec3 to_light = -directional_lights[i].direction;
        vec3 light = directional_lights[i].color * directional_lights[i].intensity;
        diffuse += light * max(dot(n, to_light), 0.0);
        float h = max(dot(n, normalize(to_light + to_camera)), 0.0);
        highlight += light * pow(h, 20.0);
    }
    vec3 color = albedo * diffuse + 0.04 * highlight;
    return pow(clamp(color, 0.0, 1.0), vec3(1.0 / 2.2));
}

void main() {
    vec4 world = M * vec4(position, 1.0);
    vec3 n = normalize(mat3(M) * normal);  // M only moves and scales uniformly
    vec3 to_camera = normalize(cam_pos - world.xyz);
    vec3 albedo = material.base_color_factor.rgb;
#ifdef HAS_COLOR
    albedo *= color_0.rgb;
#endif
    front_color = shade(albedo, n, to_camera);
    // Seen from behind (inside the mouth or the neck): dimmer, like a cavity.
    back_color = 0.4 * shade(albedo, -n, to_camera);
    gl_Position = P * V * world;
}
"""

_FRAGMENT_SHADER = """#version 330 core
in vec3 front_color;
in vec3 back_color;
out vec4 out_color;

void main() {
    out_color = vec4(gl_FrontFacing ? front_color : back_color, 1.0);
}
"""


@functools.cache
def _pass_renderer_class() -> type:
    """pyrender's Renderer, drawing with our shader into our framebuffer."""
    pyrender = _pyrender()
    from OpenGL import GL

    class SourceProgram(pyrender.shader_program.ShaderProgram):
        """A pyrender shader program built from source text instead of files."""

        def _load(self, source: str) -> str:
            version, rest = source.split("\n", 1)
            defines = "".join(f"#define {name}\n" for name in self.defines)
            return f"{version}\n{defines}{rest}"

    class PassRenderer(pyrender.Renderer):
        """Draws a scene into ``framebuffer``, each primitive in its viewport."""

        def __init__(self, width: int, height: int, framebuffer: int) -> None:
            super().__init__(width, height)
            self.framebuffer = framebuffer
            self.viewports: dict[Any, tuple[int, int, int, int]] = {}
            self._programs: dict[bool, SourceProgram] = {}

        def _configure_forward_pass_viewport(self, flags: int) -> None:
            # pyrender would draw into a framebuffer of its own and read colour
            # and depth back after every render; we read colour once, later.
            GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, self.framebuffer)
            GL.glViewport(0, 0, self.viewport_width, self.viewport_height)
            GL.glEnable(GL.GL_DEPTH_TEST)
            GL.glDepthMask(GL.GL_TRUE)
            GL.glDepthFunc(GL.GL_LESS)

        def _get_primitive_program(self, primitive, flags, program_flags):
            # pyrender asks for a primitive's program right before drawing it:
            # the moment to aim the viewport at that head's tile. (The whole
            # frame was cleared at once before: llvmpipe clears a full
            # multisampled frame ~4x faster than two scissored halves.)
            GL.glViewport(*self.viewports[primitive])
            has_color = primitive.color_0 is not None
            if has_color not in self._programs:
                defines = {"HAS_COLOR": 1} if has_color else {}
                program = SourceProgram(_VERTEX_SHADER, _FRAGMENT_SHADER, None, defines)
                program._add_to_context()
                self._programs[has_color] = program
            return self._programs[has_color]

        def delete(self) -> None:
            for program in self._programs.values():
                program.delete()
            self._programs.clear()
            super().delete()

    return PassRenderer


class _Head:
    """One head's pyrender primitive and a copy of its vertex buffer."""

    def __init__(self, faces: np.ndarray, rest: np.ndarray, colors: Any) -> None:
        pyrender = _pyrender()
        rest = np.asarray(rest, dtype=np.float32)
        self.faces = _outward(np.asarray(faces, dtype=np.int64), rest)
        # pyrender interleaves position, normal and colour in one vertex buffer;
        # we keep that layout in numpy and overwrite the buffer every frame.
        self.interleaved = np.ones((len(rest), 6 if colors is None else 10), np.float32)
        self.interleaved[:, :3] = rest
        self.interleaved[:, 3:6] = vertex_normals(rest, self.faces)
        if colors is not None:
            self.interleaved[:, 6:9] = srgb_to_linear(np.asarray(colors)[:, :3])
        material = pyrender.MetallicRoughnessMaterial(
            baseColorFactor=HEAD_COLOR if colors is None else (1.0, 1.0, 1.0, 1.0),
            doubleSided=True,  # the open neck and mouth must not show holes
        )
        self.primitive = pyrender.Primitive(
            positions=rest,
            normals=self.interleaved[:, 3:6],
            color_0=None if colors is None else self.interleaved[:, 6:10],
            indices=self.faces,
            material=material,
        )
        # Move the bounding box's centre to the origin and scale its larger
        # side (width or height) to 1: one camera then frames every head alike.
        low, high = rest.min(axis=0), rest.max(axis=0)
        scale = 1.0 / max(float(max(high[:2] - low[:2])), 1e-9)
        self.pose = np.diag([scale, scale, scale, 1.0])
        self.pose[:3, 3] = -scale * (low + high) / 2
        self.front = scale * float(high[2] - low[2]) / 2  # front face's depth

    def upload(self, vertices: np.ndarray) -> None:
        """Overwrite the GPU vertex buffer with new positions and their normals."""
        from OpenGL import GL

        vertices = np.asarray(vertices, dtype=np.float32)
        if vertices.shape != (len(self.interleaved), 3):
            raise ValueError(
                f"expected vertices of shape {(len(self.interleaved), 3)}, "
                f"got {vertices.shape}"
            )
        self.interleaved[:, :3] = vertices
        self.interleaved[:, 3:6] = vertex_normals(vertices, self.faces)
        # _buffers[0] is the interleaved vertex buffer pyrender made on the
        # first render. Rewriting it replaces a new Mesh (and GL objects) a frame.
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self.primitive._buffers[0])
        GL.glBufferSubData(
            GL.GL_ARRAY_BUFFER, 0, self.interleaved.nbytes, self.interleaved
        )
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, 0)


class _Framebuffer:
    """An RGBA + depth framebuffer, multisampled when ``samples`` > 0."""

    def __init__(self, width: int, height: int, samples: int) -> None:
        from OpenGL import GL

        self.color, self.depth = GL.glGenRenderbuffers(2)
        formats = {self.color: GL.GL_RGBA8, self.depth: GL.GL_DEPTH_COMPONENT24}
        for buffer, kind in formats.items():
            GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, buffer)
            if samples:
                GL.glRenderbufferStorageMultisample(
                    GL.GL_RENDERBUFFER, samples, kind, width, height
                )
            else:
                GL.glRenderbufferStorage(GL.GL_RENDERBUFFER, kind, width, height)
        self.id = GL.glGenFramebuffers(1)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.id)
        for attachment, buffer in (
            (GL.GL_COLOR_ATTACHMENT0, self.color),
            (GL.GL_DEPTH_ATTACHMENT, self.depth),
        ):
            GL.glFramebufferRenderbuffer(
                GL.GL_FRAMEBUFFER, attachment, GL.GL_RENDERBUFFER, buffer
            )
        status = GL.glCheckFramebufferStatus(GL.GL_FRAMEBUFFER)
        if status != GL.GL_FRAMEBUFFER_COMPLETE:
            raise _unavailable(f"framebuffer incomplete, status {status:#x}")

    def delete(self) -> None:
        from OpenGL import GL

        GL.glDeleteFramebuffers(1, [self.id])
        GL.glDeleteRenderbuffers(2, [self.color, self.depth])


class Renderer:
    """Draws N heads (1 or 2) side by side, one RGB frame per ``draw`` call.

    Build it once per video and use it as a context manager: the GL context,
    shaders and vertex buffers are made once and reused for every frame.
    """

    def __init__(
        self,
        faces: Sequence[np.ndarray],
        rest_vertices: Sequence[np.ndarray],
        *,
        size: int = 512,
        vertex_colors: Sequence[np.ndarray | None] | None = None,
        antialias: str = DEFAULT_ANTIALIAS,
    ) -> None:
        if not 1 <= len(faces) == len(rest_vertices) <= 2:
            raise ValueError("give the faces and rest vertices of one or two heads")
        if antialias not in ANTIALIAS:
            raise ValueError(f"antialias must be one of {', '.join(ANTIALIAS)}")
        colors = [None] * len(faces) if vertex_colors is None else list(vertex_colors)
        self.size, self.width = int(size), int(size) * len(faces)
        self.antialias = antialias
        samples, self._scale = ANTIALIAS[antialias]
        self._platform = _create_context(self.width, self.size)
        try:
            self._setup(faces, rest_vertices, colors, samples)
        except BaseException:
            self.close()
            raise

    def _setup(self, faces, rest_vertices, colors, samples: int) -> None:
        pyrender = _pyrender()
        from OpenGL import GL

        self._heads = [_Head(*args) for args in zip(faces, rest_vertices, colors)]
        samples = min(samples, int(GL.glGetIntegerv(GL.GL_MAX_SAMPLES)))
        # Drawn at ``scale`` times the size when supersampling.
        width, height = self.width * self._scale, self.size * self._scale
        limit = int(GL.glGetIntegerv(GL.GL_MAX_RENDERBUFFER_SIZE))
        if max(width, height) > limit:
            advice = " or --antialias other than ssaa2" if self._scale > 1 else ""
            raise RendererUnavailable(
                f"cannot draw a {width}x{height} frame (this OpenGL allows {limit} "
                f"pixels a side): use a smaller --size{advice}"
            )
        self._draw_fb = _Framebuffer(width, height, samples)
        # Multisampled or supersampled pixels cannot be read directly: they are
        # resolved (averaged) into a plain framebuffer of the video's size first.
        resolve = samples or self._scale > 1
        self._read_fb = _Framebuffer(self.width, self.size, 0) if resolve else None
        self._renderer = _pass_renderer_class()(width, height, self._draw_fb.id)

        # One scene holds every head, each centred at the origin and drawn
        # into its own tile, so one camera and one set of lights serve all.
        self._scene = pyrender.Scene(bg_color=(*BACKGROUND, 1.0), ambient_light=AMBIENT)
        for index, head in enumerate(self._heads):
            self._scene.add(pyrender.Mesh([head.primitive]), pose=head.pose)
            side = self.size * self._scale
            tile = (index * side, 0, side, side)
            self._renderer.viewports[head.primitive] = tile
        # Fit the unit square at the nearest front face; what lies behind it
        # (cheeks, ears, the back of the head) looks smaller and fits too.
        front = max(head.front for head in self._heads)
        distance = MARGIN / 2 / math.tan(FIELD_OF_VIEW / 2) + front
        camera = pyrender.PerspectiveCamera(
            yfov=FIELD_OF_VIEW, aspectRatio=1.0, znear=distance / 10, zfar=distance * 10
        )
        self._scene.add(camera, pose=_look_from((0, 0, 1), distance))
        for direction, intensity in LIGHTS:
            light = pyrender.DirectionalLight(intensity=intensity)  # white
            self._scene.add(light, pose=_look_from(direction, 1.0))
        GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)  # RGB rows of any width
        # A first frame makes pyrender upload the meshes and compile the shader.
        self.draw([head.interleaved[:, :3].copy() for head in self._heads])

    def draw(self, vertices: Sequence[np.ndarray]) -> np.ndarray:
        """One frame: (size, size * N, 3) uint8 RGB, head 0 on the left."""
        pyrender = _pyrender()
        from OpenGL import GL

        if self._platform is None:
            raise RuntimeError("the renderer is closed")
        if len(vertices) != len(self._heads):
            raise ValueError(f"expected the vertices of {len(self._heads)} heads")
        self._platform.make_current()
        for head, verts in zip(self._heads, vertices):
            if head.primitive._buffers:  # pyrender makes them on the first render
                head.upload(verts)
        self._renderer.render(self._scene, pyrender.RenderFlags.NONE)

        w, h = self.width, self.size
        if self._read_fb is not None:
            GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._draw_fb.id)
            GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, self._read_fb.id)
            # An exact 2:1 linear blit samples each pixel at the corner shared
            # by four source pixels: their mean.
            scale = self._scale
            GL.glBlitFramebuffer(
                0, 0, w * scale, h * scale, 0, 0, w, h, GL.GL_COLOR_BUFFER_BIT,
                GL.GL_LINEAR if scale > 1 else GL.GL_NEAREST,
            )  # fmt: skip
        source = self._read_fb or self._draw_fb
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, source.id)
        pixels = GL.glReadPixels(0, 0, w, h, GL.GL_RGB, GL.GL_UNSIGNED_BYTE)
        frame = np.frombuffer(pixels, dtype=np.uint8).reshape(h, w, 3)
        return np.ascontiguousarray(frame[::-1])  # GL's rows run bottom to top

    def close(self) -> None:
        """Free the GL objects and the context; safe to call twice."""
        platform, self._platform = getattr(self, "_platform", None), None
        if platform is None:
            return
        try:
            platform.make_current()
            if getattr(self, "_renderer", None) is not None:
                self._renderer.delete()  # also frees the heads' buffers
            for name in ("_draw_fb", "_read_fb"):
                if getattr(self, name, None) is not None:
                    getattr(self, name).delete()
        finally:
            _delete_context(platform)

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
