"""The llama.cpp server from llama-cpp-python (its `server` extra) on 127.0.0.1, serving a GGUF.

Used by the `server`-marked tests and by bench/scale.py. The wheel is built once per machine and
cached outside the clone (.ci/llama-wheel); without it these tests skip, unless
MOODBOT_REQUIRE_LLAMA_SERVER is set (CI), when a missing server is a failure."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bot.mock_wechat import free_port

ALIAS = "gemma-3-270m"


def available() -> bool:
    try:
        import llama_cpp.server.app  # noqa: F401
    except ImportError:
        return False
    return True


class LlamaServer:
    """`python -m llama_cpp.server` in a child process; start() waits until /v1/models answers."""

    def __init__(self, gguf: Path, port: int | None = None, threads: int = 2, n_ctx: int = 2048,
                 extra: tuple[str, ...] = ()) -> None:
        self.gguf = gguf
        self.port = port or free_port()
        self.threads = threads
        self.n_ctx = n_ctx
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = 180) -> str:
        command = [
            sys.executable, "-m", "llama_cpp.server", "--model", str(self.gguf), "--model_alias", ALIAS,
            "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.threads), "--n_threads_batch", str(self.threads),
            "--logits_all", "true",  # the completions API returns log-probabilities only with it
            # the GGUF names no chat template: without this the server falls back to llama-2's
            # [INST] <<SYS>> format, which the model then copies into its replies
            "--chat_format", "gemma",
            *self.extra,
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the llama.cpp server exited ({self.process.returncode}): {self.tail()}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2).status_code == 200:
                    return self.base_url
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the llama.cpp server did not answer within {timeout_s:g} s: {self.tail()}")
            time.sleep(0.3)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        self.process = None
