"""Serving GATI over gRPC, and the matching client.

gRPC rather than Thrift: grpcio is already a dependency, the schema
(``gati.proto``) documents the wire format, and its generated code is checked
in. A request carries one image (raw bytes plus its shape); the reply carries
the prediction, the layer that answered and the server-side model time, so a
client can tell the RPC overhead from the model's work. A malformed request
gets INVALID_ARGUMENT with a one-line reason and the server carries on.
"""

from __future__ import annotations

import os
import time
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import torch

from ..errors import UserError
from . import gati_pb2, gati_pb2_grpc
from .basemodel import BaseModel, resize_images
from .batching import Batcher
from .runtime import GatiRuntime

DTYPES = {"": np.uint8, "uint8": np.uint8, "float32": np.float32}


def _pixels_uint8(array: np.ndarray) -> np.ndarray:
    """Float pixels (0..255) as the uint8 image the model's resize takes: rounded, clipped, NaN 0.

    One rule for the server's decode and the client's resize, so both give the same pixels."""
    return np.clip(np.nan_to_num(array.astype(np.float32)), 0, 255).round().astype(np.uint8)


class GatiServicer(gati_pb2_grpc.GatiServicer):
    """Answers Predict and Info; with a ``Batcher``, concurrent requests share one runtime call.

    ``device`` is where the runtime's network lives (``cuda`` after ``runtime.to``).
    """

    def __init__(
        self,
        runtime: GatiRuntime,
        class_names: list[str] | None = None,
        epsilon: float = float("nan"),
        batcher: Batcher | None = None,
        device: str = "cpu",
    ) -> None:
        self.runtime = runtime
        self.base: BaseModel = runtime.base
        self.class_names = class_names or []
        self.epsilon = epsilon
        self.batcher = batcher
        self.device = device
        self._lut = self._uint8_table()

    def _uint8_table(self) -> np.ndarray | None:
        """``preprocess`` of every uint8 value, per channel (C x 256 float32).

        Preprocessing is elementwise, so looking a pixel up in this table gives
        exactly the bytes ``preprocess`` would: one numpy gather (~5 us) instead
        of four small torch ops (~40 us) on every request. Checked on a random
        image; None (use ``preprocess``) if the two ever differ.
        """
        c = self.base.input_shape[0]
        levels = np.broadcast_to(np.arange(256, dtype=np.uint8), (1, c, 1, 256)).copy()
        table = self.base.normalize(levels).cpu().numpy().reshape(c, 256).astype(np.float32, copy=False)
        probe = np.random.default_rng(0).integers(0, 256, size=(1, *self.base.input_shape), dtype=np.uint8)
        if not np.array_equal(self._lookup(table, probe), self.base.normalize(probe).cpu().numpy()):
            return None
        return table

    @staticmethod
    def _lookup(table: np.ndarray, image: np.ndarray) -> np.ndarray:
        out = np.empty(image.shape, np.float32)
        for ch in range(image.shape[1]):
            np.take(table[ch], image[:, ch], out=out[:, ch])
        return out

    def decode(self, request: gati_pb2.PredictRequest) -> torch.Tensor:
        """The request's image as a 1 x C x H x W tensor, or UserError saying what is wrong."""
        if request.dtype not in DTYPES:
            raise UserError(f"unknown dtype {request.dtype!r}; use uint8 or float32")
        shape = (request.channels, request.height, request.width)
        self.base.check_shape(shape)
        dtype = np.dtype(DTYPES[request.dtype])
        expected = int(np.prod(shape)) * dtype.itemsize
        if len(request.pixels) != expected:
            got = len(request.pixels)
            size = f"{shape[0]}x{shape[1]}x{shape[2]}"
            raise UserError(f"image {size} {dtype.name} needs {expected} bytes, got {got}")
        array = np.frombuffer(request.pixels, dtype=dtype).reshape(1, *shape)
        if shape != tuple(self.base.input_shape):  # resized to the model's input (logged once per shape)
            if dtype != np.uint8:  # float32 pixels are in 0..255 as on the path below
                array = _pixels_uint8(array)
            return self.base.preprocess(array.copy())
        if dtype == np.uint8 and self._lut is not None:
            return torch.from_numpy(self._lookup(self._lut, array))
        array = array.copy()  # writable for torch
        return self.base.preprocess(array if dtype == np.uint8 else array.astype(np.float32) / 255.0)

    def Predict(self, request, context):  # noqa: N802 (gRPC's name)
        start = time.perf_counter()
        try:
            x = self.decode(request)
        except UserError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        t = time.perf_counter()
        if self.batcher is not None:  # server_ms: waiting for the batch plus the batch's model time
            res = self.batcher.submit(x).result()
            k, unit, confidence = res.label, res.exit_unit, res.confidence
        else:
            out = self.runtime.predict(x if self.device == "cpu" else x.to(self.device))
            k, unit, confidence = int(out.labels[0]), int(out.exit_unit[0]), float(out.confidence[0])
        server_ms = (time.perf_counter() - t) * 1000
        reply = gati_pb2.PredictReply(
            prediction=k,
            label=self.class_names[k] if k < len(self.class_names) else str(k),
            layer=self.runtime.layer_name(unit),
            layer_index=unit,
            confidence=confidence,
            server_ms=server_ms,
        )
        reply.handler_ms = (time.perf_counter() - start) * 1000
        return reply

    def Info(self, request, context):  # noqa: N802
        c, h, w = self.base.input_shape
        return gati_pb2.InfoReply(
            network=self.base.network,
            channels=c,
            height=h,
            width=w,
            num_classes=self.base.num_classes,
            heads=[f"{e.name}@{e.threshold:g}" for e in self.runtime.exits],
            fingerprint=self.base.fingerprint(),
            epsilon=self.epsilon,
        )


def start_server(
    servicer: GatiServicer, port: int = 50053, host: str = "127.0.0.1", workers: int = 16
) -> tuple[grpc.Server, int]:
    """Start serving; returns the server and the bound port (``port=0`` picks a free one)."""
    # Port reuse off (gRPC turns SO_REUSEPORT on by default): a second server on a port in use must
    # fail to bind, not silently share the first one's requests.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=[("grpc.so_reuseport", 0)])
    gati_pb2_grpc.add_GatiServicer_to_server(servicer, server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise UserError(f"cannot listen on {host}:{port} (in use, or not an address of this machine)")
    server.start()
    return server, bound


@dataclass
class QueryResult:
    prediction: int
    label: str
    layer: str
    layer_index: int
    confidence: float
    server_ms: float  # the model's time on the server
    roundtrip_ms: float
    handler_ms: float = 0.0  # the server's whole handler (decode + model + reply)
    note: str = ""  # set when the client resized the image to the model's input


class GatiClient:
    def __init__(self, address: str = "127.0.0.1:50053", timeout: float = 10.0) -> None:
        self.address, self.timeout = address, timeout
        self.channel = grpc.insecure_channel(address)
        self.stub = gati_pb2_grpc.GatiStub(self.channel)
        self._input_shape: tuple[int, int, int] | None = None  # the server's model input, asked once

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                raise UserError(exc.details()) from None
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise UserError(
                    f"GATI server at {self.address} is not answering ({code.name.lower()})"
                ) from None
            raise UserError(f"GATI server error: {code.name}: {exc.details()}") from None

    def info(self) -> gati_pb2.InfoReply:
        return self._call(self.stub.Info, gati_pb2.InfoRequest())

    def predict(self, image: np.ndarray) -> QueryResult:
        """``image``: C x H x W (or H x W) uint8 or float32 array."""
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[None]
        if image.ndim != 3:
            raise UserError(f"an image must have 2 or 3 dimensions, got shape {image.shape}")
        image, note = self._fit(image)
        dtype = "uint8" if image.dtype == np.uint8 else "float32"
        pixels = np.ascontiguousarray(image, dtype=np.uint8 if dtype == "uint8" else np.float32).tobytes()
        request = gati_pb2.PredictRequest(
            pixels=pixels, channels=image.shape[0], height=image.shape[1], width=image.shape[2], dtype=dtype
        )
        t = time.perf_counter()
        reply = self._call(self.stub.Predict, request)
        roundtrip = (time.perf_counter() - t) * 1000
        return QueryResult(
            reply.prediction,
            reply.label,
            reply.layer,
            reply.layer_index,
            reply.confidence,
            reply.server_ms,
            roundtrip,
            reply.handler_ms,
            note,
        )

    def _fit(self, image: np.ndarray) -> tuple[np.ndarray, str]:
        """``image`` resized here to the model's input (and a note saying so), as the server would.

        A large photo sent whole would pass gRPC's 4 MB message cap (1200x1200 RGB is 4.3 MB);
        resized first it is a few KB. The pixels are the server's own resize (``resize_images``),
        so the answer is the same. A channel count the model cannot take is sent as it is: the
        server's refusal says what it expects.
        """
        if self._input_shape is None:
            info = self.info()
            self._input_shape = (info.channels, info.height, info.width)
        shape = tuple(int(v) for v in image.shape)
        if shape == self._input_shape or shape[0] not in (1, 3) or min(shape) < 1:
            return image, ""
        if image.dtype != np.uint8:  # float pixels are in 0..255, rounded as the server does
            image = _pixels_uint8(image)
        resized = resize_images(image[None].copy(), self._input_shape)[0]  # writable: PIL arrays are not
        c, h, w = self._input_shape
        return resized, f"image is {'x'.join(map(str, shape))}; resized to the model's {c}x{h}x{w}"

    def close(self) -> None:
        self.channel.close()


def read_image(path: str | os.PathLike) -> np.ndarray:
    """A C x H x W uint8 array from a PNG/JPEG (grey -> 1 channel, colour -> 3) or a .npy file.

    The image is not resized or recoloured here: ``GatiClient.predict`` resizes
    another size to the model's input (and says so), and the server refuses a
    channel count other than 1 or 3 with a message saying what it expects. An
    image PIL refuses as a decompression bomb is one error line.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"image not found: {path}")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise UserError(f"cannot read {path}: {exc}") from None
        if array.ndim == 3 and array.shape[-1] in (1, 3) and array.shape[0] not in (1, 3):
            array = array.transpose(2, 0, 1)  # H x W x C -> C x H x W
        return array[None] if array.ndim == 2 else array
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode not in ("L", "RGB"):
                img = img.convert("RGB" if img.mode in ("RGBA", "P", "CMYK", "YCbCr") else "L")
            array = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise UserError(f"cannot read image {path}: {exc}") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
