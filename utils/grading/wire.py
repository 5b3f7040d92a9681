"""The grading wire: messages between the grader and a student's kernel, as data only.

Both ends of a pipe pair speak it: the grader's trusted process and the student's kernel.  A
message is a JSON header plus raw byte buffers, framed by their lengths::

    b"AXG1" | u32 header length | u32 number of buffers | header (UTF-8 JSON)
            | for each buffer: u64 length | bytes

No pickle anywhere: a value is encoded as a JSON tree in which arrays are *references to
buffers* with a declared dtype and shape (:class:`Codec`).  Decoding checks every declared size
against the bytes that came, every dtype against a short list of plain numeric types, nesting depth
and item counts against :class:`Limits`, and rejects anything else with :class:`WireError`.  What
crosses is therefore only ever data: tensors, NumPy arrays and scalars, Python numbers, strings,
bytes, ``None`` and lists / tuples / dicts of them, plus a few *references* that each side
resolves itself (an answer function by name, a zoo model by name, a callable or a black box
served by the other side during one call).

:class:`Endpoint` adds requests and replies on top: ``request(op, fields, payload)`` sends and then
serves the other side's requests (callbacks, nested calls) until its own reply comes.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

MAGIC = b"AXG1"
_HEAD = struct.Struct("<4sII")
_LEN = struct.Struct("<Q")

# name -> (numpy dtype used on the wire, torch dtype name)
DTYPES = {
    "bool": "bool", "uint8": "uint8", "int8": "int8", "int16": "int16", "int32": "int32",
    "int64": "int64", "float16": "float16", "float32": "float32", "float64": "float64",
    "complex64": "complex64", "complex128": "complex128", "bfloat16": "int16",
}


class WireError(ValueError):
    """A message or value that is not what the protocol allows (sizes, types, nesting)."""


class DataError(WireError):
    """A value that cannot be sent as data (e.g. a function returned a module or a lambda)."""


class PeerClosed(ConnectionError):
    """The other side closed the pipe (its process exited or was killed)."""


class WaitTimeout(TimeoutError):
    """No message arrived before the deadline."""


@dataclass(frozen=True)
class Limits:
    """What one message may hold; the trusted side enforces these on everything it reads."""

    max_header: int = 8 << 20          # bytes of JSON
    max_bytes: int = 1 << 30           # all buffers of one message together
    max_buffers: int = 10_000
    max_depth: int = 40
    max_items: int = 200_000           # JSON nodes in one value
    max_ndim: int = 16
    max_string: int = 1 << 20          # characters


# ============================================================================================
# framing


def _write_all(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while view:
        written = os.write(fd, view)
        view = view[written:]


def send(fd: int, header: dict, buffers: list = ()) -> None:
    """Write one message (blocking)."""
    text = json.dumps(header, allow_nan=False, separators=(",", ":")).encode()
    parts = [_HEAD.pack(MAGIC, len(text), len(buffers)), text]
    for buffer in buffers:
        view = memoryview(buffer).cast("B")
        parts.append(_LEN.pack(view.nbytes))
        parts.append(view)
    for part in parts:
        _write_all(fd, part)


def wait_readable(fd: int, timeout: float | None) -> bool:
    """True when ``fd`` has data (or EOF) within ``timeout`` seconds (``None``: forever)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))


def _read_exact(fd: int, n: int, deadline: float | None) -> bytearray:
    out = bytearray()
    while len(out) < n:
        if deadline is not None and not wait_readable(fd, deadline - time.monotonic()):
            raise WireError(f"a message stopped half-way ({len(out)} of {n} bytes)")
        chunk = os.read(fd, min(n - len(out), 1 << 20))
        if not chunk:
            raise PeerClosed("the other side closed the connection")
        out += chunk
    return out


def receive(fd: int, limits: Limits, *, deadline: float | None = None) -> tuple[dict, list]:
    """Read one whole message; raises :class:`WireError` for anything malformed."""
    magic, header_length, count = _HEAD.unpack(_read_exact(fd, _HEAD.size, deadline))
    if magic != MAGIC:
        raise WireError("not a grading message (bad magic bytes)")
    if header_length > limits.max_header or count > limits.max_buffers:
        raise WireError(f"message too large ({header_length} header bytes, {count} buffers)")
    try:
        header = json.loads(bytes(_read_exact(fd, header_length, deadline)),
                            parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        raise WireError(f"message header is not valid JSON ({type(error).__name__})") from None
    if not isinstance(header, dict):
        raise WireError("message header is not a JSON object")
    buffers, total = [], 0
    for _ in range(count):
        (length,) = _LEN.unpack(_read_exact(fd, _LEN.size, deadline))
        total += length
        if total > limits.max_bytes:
            raise WireError(f"message larger than {limits.max_bytes} bytes")
        buffers.append(_read_exact(fd, length, deadline))
    return header, buffers


def _reject_constant(name: str):
    raise ValueError(f"JSON constant {name} is not allowed")


# ============================================================================================
# values <-> JSON trees with buffers


def _torch():
    return sys.modules.get("torch")


class Codec:
    """Encodes values into ``(tree, buffers)`` and back, for one side.

    ``encode_other(value) -> dict | None`` and ``decode_other(tag, node) -> value`` are the
    side's hooks for references (answers, zoo models, handles); everything else is plain data.
    """

    def __init__(self, limits: Limits = Limits(), *,
                 encode_other: Callable[[Any, str], dict | None] | None = None,
                 decode_other: Callable[[str, dict, str], Any] | None = None):
        self.limits = limits
        self.encode_other = encode_other
        self.decode_other = decode_other
        self.context = "request"      # or "reply": hooks refuse callables in return values

    # ---------------------------------------------------------------- encoding
    def encode(self, value, buffers: list, context: str = "request") -> Any:
        self.context = context
        return self._encode(value, buffers, 0)

    def _encode(self, value, buffers: list, depth: int):
        if depth > self.limits.max_depth:
            raise DataError(f"value nested deeper than {self.limits.max_depth} levels")
        torch = _torch()
        if value is None or type(value) is bool:
            return value
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int) and not isinstance(value, np.generic):
            return {"$": "int", "v": str(int(value))} if abs(int(value)) >= 2 ** 53 else int(value)
        if isinstance(value, float) and not isinstance(value, np.generic):
            value = float(value)
            return value if np.isfinite(value) else {"$": "float", "v": repr(value)}
        if isinstance(value, complex) and not isinstance(value, np.generic):
            return {"$": "complex", "re": self._encode(value.real, buffers, depth + 1),
                    "im": self._encode(value.imag, buffers, depth + 1)}
        if isinstance(value, str):
            if len(value) > self.limits.max_string:
                raise DataError(f"string longer than {self.limits.max_string} characters")
            return {"$": "str", "v": str(value)} if value.startswith("$") else str(value)
        if isinstance(value, (bytes, bytearray)):
            buffers.append(bytes(value))
            return {"$": "bytes", "b": len(buffers) - 1}
        if isinstance(value, np.ndarray):
            return self._array("ndarray", value, buffers)
        if isinstance(value, np.generic):
            node = self._array("npscalar", np.asarray(value), buffers)
            return node
        if torch is not None:
            if isinstance(value, torch.Tensor):
                return self._tensor(value, buffers)
            if isinstance(value, torch.Size):
                return {"$": "size", "items": [int(v) for v in value]}
            if isinstance(value, torch.device):
                return {"$": "device", "v": str(value)}
            if isinstance(value, torch.dtype):
                return {"$": "dtype", "v": str(value).removeprefix("torch.")}
            if isinstance(value, torch.Generator):
                state = value.get_state().numpy()
                buffers.append(state.tobytes())
                return {"$": "generator", "device": str(value.device), "b": len(buffers) - 1}
        if self.encode_other is not None:
            node = self.encode_other(value, self.context)
            if node is not None:
                return node
        if isinstance(value, list):
            self._count(len(value))
            return [self._encode(v, buffers, depth + 1) for v in value]
        if isinstance(value, tuple):
            self._count(len(value))
            return {"$": "tuple", "items": [self._encode(v, buffers, depth + 1) for v in value]}
        if isinstance(value, dict):
            self._count(len(value))
            return {"$": "dict", "items": [[self._encode(k, buffers, depth + 1),
                                            self._encode(v, buffers, depth + 1)]
                                           for k, v in value.items()]}
        raise DataError(f"cannot send a {_type_name(value)}: only tensors, arrays, numbers, "
                        "strings, None and lists/tuples/dicts of them cross between the grader "
                        "and the notebook")

    def _count(self, n: int) -> None:
        if n > self.limits.max_items:
            raise DataError(f"a container with {n} items (at most {self.limits.max_items})")

    def _array(self, tag: str, array: np.ndarray, buffers: list) -> dict:
        name = array.dtype.name
        if name not in DTYPES or name == "bfloat16":
            raise DataError(f"arrays of dtype {array.dtype} cannot be sent (use a numeric dtype)")
        array = array.astype(array.dtype.newbyteorder("="), order="C", copy=False)
        buffers.append(array.reshape(-1).view(np.uint8).tobytes())
        return {"$": tag, "b": len(buffers) - 1, "dtype": name, "shape": list(array.shape)}

    def _tensor(self, tensor, buffers: list) -> dict:
        torch = _torch()
        if tensor.layout != torch.strided or tensor.is_quantized or tensor.is_meta:
            raise DataError(f"cannot send a {tensor.layout} tensor: send a dense tensor")
        name = str(tensor.dtype).removeprefix("torch.")
        if name not in DTYPES:
            raise DataError(f"tensors of dtype {tensor.dtype} cannot be sent")
        requires_grad = bool(tensor.requires_grad)
        has_graph = tensor.grad_fn is not None
        plain = torch.Tensor.detach(tensor).to("cpu").resolve_conj().resolve_neg().contiguous()
        if name == "bfloat16":
            plain = plain.view(torch.int16)
        array = plain.numpy()
        buffers.append(array.reshape(-1).view(np.uint8).tobytes())
        return {"$": "tensor", "b": len(buffers) - 1, "dtype": name, "shape": list(array.shape),
                "device": str(tensor.device), "requires_grad": requires_grad,
                "grad_fn": has_graph}

    # ---------------------------------------------------------------- decoding
    def decode(self, node, buffers: list, context: str = "request") -> Any:
        self._seen = 0
        self.context = context
        try:
            return self._decode(node, buffers, 0)
        except WireError:
            raise
        except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as error:
            raise WireError(f"malformed value ({type(error).__name__}: {error})") from None

    def _decode(self, node, buffers: list, depth: int):
        self._seen += 1
        if self._seen > self.limits.max_items or depth > self.limits.max_depth:
            raise WireError("value too large or nested too deeply")
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [self._decode(v, buffers, depth + 1) for v in node]
        if not isinstance(node, dict) or not isinstance(node.get("$"), str):
            raise WireError("malformed value")
        tag = node["$"]
        if tag == "str":
            return _field(node, "v", str)
        if tag == "int":
            return int(_field(node, "v", str))
        if tag == "float":
            text = _field(node, "v", str)
            if text not in ("nan", "inf", "-inf"):
                raise WireError(f"bad float {text!r}")
            return float(text)
        if tag == "complex":
            return complex(self._decode(node.get("re"), buffers, depth + 1),
                           self._decode(node.get("im"), buffers, depth + 1))
        if tag == "bytes":
            return bytes(_buffer(node, buffers))
        if tag == "tuple":
            return tuple(self._decode(v, buffers, depth + 1) for v in _field(node, "items", list))
        if tag == "dict":
            out = {}
            for pair in _field(node, "items", list):
                if not isinstance(pair, list) or len(pair) != 2:
                    raise WireError("malformed dict item")
                key = self._decode(pair[0], buffers, depth + 1)
                try:
                    out[key] = self._decode(pair[1], buffers, depth + 1)
                except TypeError:
                    raise WireError("unhashable dict key") from None
            return out
        if tag in ("ndarray", "npscalar"):
            array = self._decode_array(node, buffers)
            return array[()] if tag == "npscalar" else array
        torch = _torch()
        if tag in ("tensor", "size", "device", "dtype", "generator") and torch is None:
            import torch
        if tag == "tensor":
            return self._decode_tensor(node, buffers)
        if tag == "size":
            return torch.Size([int(v) for v in _field(node, "items", list)])
        if tag == "device":
            return _device(_field(node, "v", str))
        if tag == "dtype":
            name = _field(node, "v", str)
            if name not in DTYPES:
                raise WireError(f"dtype {name!r} not allowed")
            return getattr(torch, name)
        if tag == "generator":
            generator = torch.Generator(device=_device(_field(node, "device", str)))
            state = torch.from_numpy(np.frombuffer(bytes(_buffer(node, buffers)), np.uint8).copy())
            try:
                generator.set_state(state)
            except (RuntimeError, TypeError) as error:
                raise WireError(f"bad generator state ({error})") from None
            return generator
        if self.decode_other is not None:
            return self.decode_other(tag, node, self.context)
        raise WireError(f"unknown value tag {tag!r}")

    def _decode_array(self, node: dict, buffers: list) -> np.ndarray:
        name = _field(node, "dtype", str)
        if name not in DTYPES:
            raise WireError(f"dtype {name!r} is not allowed")
        shape = _field(node, "shape", list)
        if len(shape) > self.limits.max_ndim or not all(
                type(n) is int and 0 <= n < 2 ** 40 for n in shape):
            raise WireError(f"bad shape {shape!r}")
        dtype = np.dtype(DTYPES[name])
        data = _buffer(node, buffers)
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if count * dtype.itemsize != len(data):
            raise WireError(f"array of shape {tuple(shape)} and dtype {name} needs "
                            f"{count * dtype.itemsize} bytes, {len(data)} came")
        return np.frombuffer(data, dtype=dtype, count=count).reshape(shape).copy()

    def _decode_tensor(self, node: dict, buffers: list):
        torch = _torch()
        array = self._decode_array(node, buffers)
        tensor = torch.from_numpy(array)
        if node["dtype"] == "bfloat16":
            tensor = tensor.view(torch.bfloat16)
        tensor = tensor.to(_device(_field(node, "device", str)))
        if node.get("requires_grad") is True:
            if not (tensor.is_floating_point() or tensor.is_complex()):
                raise WireError("only floating-point tensors can require gradients")
            tensor.requires_grad_(True)
            if node.get("grad_fn") is True:
                tensor = tensor.clone()  # not a leaf, as it was on the other side
        return tensor


def _field(node: dict, key: str, kind: type):
    value = node.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise WireError(f"malformed value (field {key!r})")
    return value


def _buffer(node: dict, buffers: list) -> bytearray:
    index = node.get("b")
    if type(index) is not int or not 0 <= index < len(buffers):
        raise WireError("reference to a missing buffer")
    return buffers[index]


def _device(name: str):
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise WireError(f"bad device {name!r}") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda" and torch.cuda.is_available() and (
            device.index is None or device.index < torch.cuda.device_count()):
        return device
    raise WireError(f"device {name!r} is not available on this side")


def _type_name(value) -> str:
    kind = type(value)
    module = getattr(kind, "__module__", "") or ""
    name = getattr(kind, "__qualname__", kind.__name__)
    return name if module in ("builtins", "") else f"{module}.{name}"


# ============================================================================================
# requests and replies


class RemoteError(Exception):
    """The other side's request handler raised; ``type_name`` and ``message`` say what."""

    def __init__(self, type_name: str, message: str, info: dict | None = None):
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name, self.message, self.info = type_name, message, info or {}


def new_id() -> str:
    return secrets.token_hex(8)


class Endpoint:
    """One side of the pipe pair: send requests, serve the other side's, match replies.

    ``handle(op, header, payload) -> (value, extra)`` serves the other side's requests;
    ``wait(fd)`` (optional) is called to wait for data and may raise to abandon a request.
    """

    def __init__(self, read_fd: int, write_fd: int, codec: Codec, *,
                 handle: Callable[[str, dict, Any], tuple[Any, dict]],
                 wait: Callable[[int], None] | None = None, max_nesting: int = 20,
                 abort: tuple[type, ...] = ()):
        self.read_fd, self.write_fd = read_fd, write_fd
        self.codec, self.handle, self.wait = codec, handle, wait
        self.abort = abort            # exceptions that abandon everything instead of replying
        self.max_nesting = max_nesting
        self.pending: list[str] = []   # ids of our requests, innermost last

    def send_request(self, op: str, fields: dict, payload: Any = None) -> str:
        buffers: list = []
        tree = self.codec.encode(payload, buffers)
        request_id = new_id()
        send(self.write_fd, {"kind": "request", "id": request_id, "op": op, "fields": fields,
                             "data": tree}, buffers)
        return request_id

    def request(self, op: str, fields: dict, payload: Any = None) -> tuple[Any, dict]:
        """Send a request and serve the other side until its reply: ``(value, extra)``."""
        if len(self.pending) >= self.max_nesting:
            raise WireError(f"calls nested more than {self.max_nesting} deep")
        request_id = self.send_request(op, fields, payload)
        self.pending.append(request_id)
        try:
            return self.until_reply(request_id)
        finally:
            self.pending.remove(request_id)

    def until_reply(self, request_id: str) -> tuple[Any, dict]:
        while True:
            header, buffers = self.read()
            kind = header.get("kind")
            if kind == "reply":
                if header.get("id") != request_id:
                    raise WireError("a reply to a request that was not asked")
                if header.get("ok") is True:
                    extra = header.get("extra") or {}
                    if not isinstance(extra, dict):
                        raise WireError("malformed reply")
                    return self.codec.decode(header.get("data"), buffers, "reply"), extra
                error = header.get("error")
                if not isinstance(error, dict):
                    raise WireError("malformed error reply")
                raise RemoteError(_text(error.get("type"), 100) or "Exception",
                                  _text(error.get("message"), 2000), error.get("info")
                                  if isinstance(error.get("info"), dict) else None)
            if kind == "request":
                self.serve(header, buffers)
                continue
            raise WireError("a message that is neither a request nor a reply")

    def read(self) -> tuple[dict, list]:
        if self.wait is not None:
            self.wait(self.read_fd)
        return receive(self.read_fd, self.codec.limits, deadline=time.monotonic() + 120)

    def serve(self, header: dict, buffers: list) -> None:
        """Handle one request of the other side and send its reply."""
        request_id = header.get("id")
        op, fields = header.get("op"), header.get("fields")
        if not isinstance(request_id, str) or not isinstance(op, str) or not isinstance(fields, dict):
            raise WireError("malformed request")
        try:
            payload = self.codec.decode(header.get("data"), buffers)
            value, extra = self.handle(op, fields, payload)
            reply_buffers: list = []
            tree = self.codec.encode(value, reply_buffers, "reply")
            send(self.write_fd, {"kind": "reply", "id": request_id, "ok": True, "data": tree,
                                 "extra": extra}, reply_buffers)
        except (PeerClosed, BrokenPipeError, *self.abort):
            raise
        except BaseException as error:  # noqa: BLE001 - every failure becomes an error reply
            send(self.write_fd, {"kind": "reply", "id": request_id, "ok": False,
                                 "error": describe_error(error)})


def describe_error(error: BaseException) -> dict:
    info = getattr(error, "grading_info", None)
    return {"type": _text(type(error).__name__, 100), "message": _text(_message(error), 2000),
            **({"info": info} if isinstance(info, dict) else {})}


def _message(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:  # a hostile __str__
        return "(the error's message could not be read)"


def _text(value, limit: int) -> str:
    """A printable, single-line, bounded string from something the other side sent."""
    if not isinstance(value, str):
        return ""
    text = "".join(ch if ch.isprintable() else " " for ch in value[: limit * 2])
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def call_arguments(payload) -> tuple[list, dict]:
    """``(args, kwargs)`` of a decoded call: ``[list, {str: value}]``, or :class:`WireError`."""
    if not (isinstance(payload, (list, tuple)) and len(payload) == 2 and
            isinstance(payload[0], (list, tuple)) and isinstance(payload[1], dict) and
            all(isinstance(key, str) for key in payload[1])):
        raise WireError("malformed call arguments")
    return list(payload[0]), payload[1]
