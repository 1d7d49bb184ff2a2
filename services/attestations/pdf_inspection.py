"""Reading an uploaded PDF in a worker process, with a time limit and a memory limit.

A PDF sent to ``POST /v1/verify`` is untrusted: a crafted one can cost seconds of CPU (huge
name trees, thousands of objects) or much memory, and pyHanko's parser is Python code that
would hold the event loop (and the GIL) meanwhile. ``PdfInspector`` keeps a few long-lived
worker processes (forkserver, pyHanko preloaded: a job costs a pipe round trip, not an
interpreter start); each runs ``inspect_pdf`` under ``RLIMIT_AS``. A job over the time limit
gets its worker killed and replaced, and the upload a failed ``format`` check.

``inspect_pdf`` extracts the attached credential and checks the PAdES signature: exactly one,
made with the service's own PDF signing certificate, intact, covering the whole file (no
incremental update after it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import resource
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from typing import Any

from pyhanko.keys import load_certs_from_pemder_data
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

from services.attestations.pdf import credential_in, open_pdf
from services.runtime.problems import Problem

log = logging.getLogger("certibloc.attestations.pdf")

NO_CREDENTIAL = "le PDF ne contient pas de justificatif (attestation.vc.jwt)"
NOT_A_PDF = "pas un PDF"
UNREADABLE = "PDF illisible ou corrompu"
TOO_LONG = "analyse du PDF trop longue"
TOO_MUCH_MEMORY = "analyse du PDF trop gourmande en mémoire"
PADES_OK = "signé par le service (PAdES), intact, la signature couvre tout le fichier"
NOT_SIGNED_BY_SERVICE = "le PDF n'est pas signé par le service"


@dataclass(frozen=True)
class VerifyLimits:
    """Body size caps of ``POST /v1/verify``, by what is sent."""

    jws_bytes: int = 64 * 1024
    pdf_bytes: int = 2 * 1024 * 1024


class TooManyRequests(Problem):
    status = 429
    title = "Trop de requêtes"


@dataclass(frozen=True)
class PdfInspection:
    """What a PDF carries: its credential (None: ``format_detail`` says why) and the verdict on
    its PAdES signature (``pades_ok`` None: not looked at, the file is no PDF)."""

    credential: str | None
    format_detail: str
    pades_ok: bool | None = None
    pades_detail: str = ""

    @classmethod
    def refused(cls, why: str) -> PdfInspection:
        return cls(None, why)


# --------------------------------------------------------------------------- in the worker


def _pades(reader: Any, trusted: Any) -> tuple[bool, str]:
    signatures = reader.embedded_signatures
    if not signatures:
        return False, f"{NOT_SIGNED_BY_SERVICE} (aucune signature)"
    if len(signatures) > 1:
        return (
            False,
            f"le PDF porte {len(signatures)} signatures ; seule celle du service est admise",
        )
    signature = signatures[0]
    if signature.signer_cert.dump() != trusted.dump():
        return False, f"{NOT_SIGNED_BY_SERVICE} (signé par un autre certificat)"
    # skip_diff: a change after the signature already fails the coverage test below, and the
    # diff analysis is the costly part of validating a many-times updated file.
    status = validate_pdf_signature(
        signature, ValidationContext(trust_roots=[trusted]), skip_diff=True
    )
    if not status.intact or not status.valid:
        return False, "le PDF a été modifié après signature (empreinte ou signature invalide)"
    if status.coverage != SignatureCoverageLevel.ENTIRE_FILE:
        return False, "le PDF a été modifié après signature (mise à jour ajoutée après elle)"
    if not status.trusted:
        return False, NOT_SIGNED_BY_SERVICE
    return True, PADES_OK


def inspect_pdf(pdf: bytes, trusted: Any) -> PdfInspection:
    """The credential attached to ``pdf`` and the verdict on its signature. Raises on nothing
    a client can send short of exhausting the worker's limits."""
    if b"%PDF-" not in pdf[:1024]:
        return PdfInspection.refused(NOT_A_PDF)
    try:
        reader = open_pdf(pdf)
        root = reader.root
    except (MemoryError, RecursionError):
        raise
    except Exception:  # the parser's errors are many (PdfError, ValueError, KeyError...)
        return PdfInspection.refused(UNREADABLE)
    try:
        credential = credential_in(root)
        detail = "PDF lisible, justificatif joint" if credential else NO_CREDENTIAL
    except MemoryError:
        raise
    except Exception:
        credential, detail = None, f"{UNREADABLE} (pièces jointes)"
    try:
        pades_ok, pades_detail = _pades(reader, trusted)
    except MemoryError:
        raise
    except Exception:
        pades_ok, pades_detail = False, f"{NOT_SIGNED_BY_SERVICE} (signature illisible)"
    return PdfInspection(credential, detail, pades_ok, pades_detail)


def _serve(conn: Connection, trusted_pem: bytes, memory_bytes: int) -> None:
    """A worker's loop: one PDF in, one PdfInspection out, until the pipe closes."""
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    trusted = next(iter(load_certs_from_pemder_data(trusted_pem)))
    while True:
        try:
            pdf = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            result = inspect_pdf(pdf, trusted)
        except MemoryError:
            result = PdfInspection.refused(TOO_MUCH_MEMORY)
        except RecursionError:
            result = PdfInspection.refused(f"{UNREADABLE} (imbrication trop profonde)")
        except Exception:
            result = PdfInspection.refused(UNREADABLE)
        del pdf
        try:
            conn.send(result)
        except (EOFError, OSError):
            return


# --------------------------------------------------------------------------- in the service


class _Worker:
    def __init__(self, context: ForkServerContext, trusted_pem: bytes, memory_bytes: int) -> None:
        parent, child = context.Pipe()
        self.conn = parent
        self.process: BaseProcess = context.Process(
            target=_serve,
            args=(child, trusted_pem, memory_bytes),
            name="certibloc-pdf-inspection",
            daemon=True,
        )
        self.process.start()
        child.close()

    def run(self, pdf: bytes, time_limit: float) -> PdfInspection | None:
        """The worker's answer, or None if it took too long or died (then it is dead)."""
        try:
            self.conn.send_bytes(pdf)
            if self.conn.poll(time_limit):
                answer = self.conn.recv()
                if isinstance(answer, PdfInspection):
                    return answer
        except (EOFError, OSError):
            pass
        self.stop()
        return None

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)


class PdfInspector:
    """A pool of PDF worker processes; ``start`` and ``close`` from the app's lifespan."""

    def __init__(
        self,
        trusted_cert_pem: bytes,
        *,
        workers: int = 2,
        time_limit: float = 3.0,
        memory_bytes: int = 512 << 20,
        max_waiting: int = 16,
    ) -> None:
        self.trusted_cert_pem = trusted_cert_pem
        self.workers = workers
        self.time_limit = time_limit
        self.memory_bytes = memory_bytes
        self.max_waiting = max_waiting
        self._context = multiprocessing.get_context("forkserver")
        # The forkserver imports pyHanko once; every worker is forked from it, warm.
        self._context.set_forkserver_preload([__name__])
        self._idle: asyncio.Queue[_Worker] | None = None
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._threads: ThreadPoolExecutor | None = None
        self._waiting = 0

    def _spawn(self) -> _Worker:
        worker = _Worker(self._context, self.trusted_cert_pem, self.memory_bytes)
        with self._lock:
            self._all.add(worker)
        return worker

    async def start(self) -> None:
        # A thread per worker: each blocks on its pipe while the event loop goes on.
        self._threads = ThreadPoolExecutor(self.workers, thread_name_prefix="pdf-inspection")
        self._idle = asyncio.Queue()
        loop = asyncio.get_running_loop()
        spawned = await asyncio.gather(
            *(loop.run_in_executor(self._threads, self._spawn) for _ in range(self.workers))
        )
        for worker in spawned:
            self._idle.put_nowait(worker)

    def _run(self, worker: _Worker, pdf: bytes) -> tuple[_Worker, PdfInspection | None]:
        answer = worker.run(pdf, self.time_limit)
        if answer is None:  # killed or dead: a fresh one takes its place
            with self._lock:
                self._all.discard(worker)
            worker = self._spawn()
        return worker, answer

    async def inspect(self, pdf: bytes) -> PdfInspection:
        if self._idle is None or self._threads is None:
            raise RuntimeError("PdfInspector.start() was not called")
        if self._idle.empty() and self._waiting >= self.max_waiting:
            raise TooManyRequests(
                "Trop de PDF en cours de vérification ; réessayez dans quelques secondes.",
                headers={"Retry-After": "5"},
            )
        self._waiting += 1
        try:
            worker = await self._idle.get()
        finally:
            self._waiting -= 1
        idle = self._idle
        job = asyncio.get_running_loop().run_in_executor(self._threads, self._run, worker, pdf)

        def give_back(done: asyncio.Future[tuple[_Worker, PdfInspection | None]]) -> None:
            # Once the thread is done with it, whether or not the request is still there.
            idle.put_nowait(worker if done.exception() else done.result()[0])

        job.add_done_callback(give_back)
        _, answer = await asyncio.shield(job)  # a client gone must not free a busy worker
        if answer is None:
            log.warning("PDF inspection over its limits: worker replaced")
            return PdfInspection.refused(
                f"{TOO_LONG} (plus de {self.time_limit:g} s) ou impossible"
            )
        return answer

    async def close(self) -> None:
        with self._lock:
            workers = list(self._all)
            self._all.clear()
        await asyncio.gather(*(asyncio.to_thread(w.stop) for w in workers))
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
        self._idle = None
