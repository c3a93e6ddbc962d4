"""The Client's task calls: submit, wait, run, and their bulk forms."""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from wavespeed_async._core.errors import (
    APIStatusError,
    ClientClosedError,
    DecodeError,
    ServerError,
    SubmissionOutcomeUnknown,
    TaskFailedError,
    TaskTimeoutError,
    ValidationError,
    WaveSpeedError,
)
from wavespeed_async._core.ids import check_task_id
from wavespeed_async._core.models import Prediction, prediction_decoder
from wavespeed_async._core.money import usd_amount
from wavespeed_async._core.requests import TypedRequest, request_body
from wavespeed_async._core.settings import FlowLimits, Timeouts
from wavespeed_async._facade.bulk import (
    DEFAULT_SUBMIT_GRACE_S,
    BulkRun,
    default_concurrency,
    submit_in_flight,
)
from wavespeed_async._facade.jobs import run_job, wait_job
from wavespeed_async._facade.sending import current_index
from wavespeed_async._runtime.api import result_path
from wavespeed_async._runtime.budget import BATCH_BUDGET, LocalBudget
from wavespeed_async._runtime.waits import finished

if TYPE_CHECKING:
    from wavespeed_async._runtime.api import Api
    from wavespeed_async._runtime.budget import Budget, Hold
    from wavespeed_async._runtime.events import Events
    from wavespeed_async._runtime.flow import FlowControl
    from wavespeed_async._runtime.share import Share
    from wavespeed_async._runtime.waits import Waits

__all__ = ["ModelOrRequest", "TaskCreatedHook", "Tasks", "Unset"]

log = logging.getLogger("wavespeed_async")

#: Called with the created Prediction the moment a task id exists, before any polling.
TaskCreatedHook = Callable[[Prediction], Awaitable[None] | None]
ModelOrRequest = str | TypedRequest


class Unset:
    """The default of an argument whose default is a setting (e.g. ``timeouts.task_s``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<default>"


#: The one Unset value.
UNSET: Final = Unset()
_UNSET: Final = UNSET


def _result_of(pred: Prediction | None, task_id: str) -> Prediction:
    """The task in a result answer (a DecodeError if the answer has none)."""
    if pred is None:
        raise DecodeError("the result has no task in it", task_id=task_id)
    return pred


def _tell_end(
    events: Events,
    task_id: str,
    exc: BaseException,
    limit: float | None,
    index: int | None,
    counted: bool,
) -> None:
    """Tell how a wait ended with ``exc`` (``counted``: its start was told)."""
    if index is None:
        index = current_index()
    if isinstance(exc, TaskTimeoutError):
        events.timed_out(task_id, limit, exc.last, index, counted=counted)
    elif isinstance(exc, ClientClosedError):
        events.abandoned(task_id, "closed", index, counted=counted)
    elif isinstance(exc, Exception):  # the task failed, or cannot be followed
        events.failed(task_id, exc, index)
    else:  # cancelled
        events.abandoned(task_id, "cancelled", index, counted=counted)


class Tasks:
    """The task calls of :class:`~wavespeed_async.Client`."""

    _timeouts: Timeouts
    _limits: FlowLimits
    _share: Share | None
    on_task_created: TaskCreatedHook | None
    tasks_created: int
    _events: Events

    def _open(self) -> Api:
        raise NotImplementedError

    async def _check_request(self, model: str, body: Mapping[str, Any]) -> None:
        raise NotImplementedError  # the catalogue's check (``_facade/catalog.py``)

    def _waiting(self) -> Waits:
        raise NotImplementedError

    if TYPE_CHECKING:  # the spend mixin's (``_facade/spend.py``)

        async def _hold_spend(self, model: str, body: Mapping[str, Any]) -> Hold | None: ...
        def _spend_settle(self, hold: Hold | None, exc: BaseException, *, sent: bool) -> None: ...
        def _spend_created(self, hold: Hold | None, task_id: str) -> None: ...
        def _spend_ended(self, task_id: str, *, failed: bool) -> None: ...
        def _client_budget(self) -> Budget | None: ...

    @property
    def flow(self) -> FlowControl:
        raise NotImplementedError

    # -- tasks -------------------------------------------------------------------------

    async def submit(
        self,
        model: ModelOrRequest,
        input: Mapping[str, Any] | None = None,
        *,
        webhook: str | None = None,
        sync: bool = False,
    ) -> Prediction:
        """Submit one task (one POST) and return it as created.

        Args:
            model: A model path such as ``"wavespeed-ai/flux-kontext-dev"``, or a typed
                request such as ``FluxKontextDev(prompt=...)`` (then ``input`` is omitted).
            input: The model's inputs, a flat mapping.
            webhook: A URL that the server POSTs the finished task to.
            sync: Ask the server to hold the answer until the task ends
                (``enable_sync_mode``). If the connection is lost while it holds, the task
                id is lost with it: prefer polling or webhooks for bulk work.

        Every input is checked before anything is sent: against the model's schema from
        the catalogue (see ``Client(catalog=...)``), or the client's built-in spec.

        Raises:
            ValidationError: bad input (an unknown field, a missing required one, a value
                of the wrong type or out of range...), before anything is sent.
            SubmissionOutcomeUnknown: the answer was lost; a task may exist. Not re-sent.
            RateLimitError, APIStatusError, TransportError: the submit was refused or could
                not be sent (re-sent first where provably safe).
        """
        path, body = request_body(model, input)
        await self._check_request(path, body)
        if sync:
            body["enable_sync_mode"] = True
        if webhook is not None:
            if urlsplit(webhook).scheme not in ("http", "https"):
                raise ValidationError(
                    "webhook", f"webhook: {webhook!r:.80} is not allowed; allowed: an http(s) URL"
                )
            if body.get("enable_base64_output"):
                raise ValidationError(
                    "webhook",
                    "webhook: cannot be combined with enable_base64_output (the server "
                    "rejects it); allowed: one or the other",
                )
        api = self._open()
        flow = api.flow
        hold = None
        if self._limits.budget_usd is not None or BATCH_BUDGET.get() is not None:
            hold = await self._hold_spend(path, body)  # BudgetExceeded: never sent
        events = self._events
        ref: int | None = None
        sent_at, sent = time.time(), False
        try:
            start = await flow.acquire_start()
        except BaseException as exc:
            self._spend_settle(hold, exc, sent=False)
            raise
        try:
            with submit_in_flight():
                if events.active:
                    ref = events.begin_submit(path, current_index())
                sent = True
                env = await api.submit(
                    path,
                    body,
                    prediction_decoder,
                    params={"webhook": webhook} if webhook else None,
                    timeout_s=self._timeouts.sync_request_s if sync else None,
                    ref=ref,
                )
        except APIStatusError as exc:
            if exc.task_id is not None:
                # An error answer that names a task: the task exists. Report it as created.
                self._spend_created(hold, exc.task_id)
                pred = Prediction(id=exc.task_id, model=path)
                await self._task_created(pred, path, False, ref)
            else:
                self._spend_settle(hold, exc, sent=sent)
                if ref is not None and events.active:
                    events.submit_failed(ref, exc, path)
            raise
        except BaseException as exc:
            # Sent (or cut off while sent) and no task id came back: unknown, or refused.
            if isinstance(exc, SubmissionOutcomeUnknown):
                exc.sent_at, exc.lost_at = sent_at, time.time()
            self._spend_settle(hold, exc, sent=sent)
            if ref is not None and events.active:
                events.submit_failed(ref, exc, path)
            raise
        finally:
            flow.start_sent(start)
        if env.data is None:
            error = DecodeError(f"submit to {path}: the answer has no task in it")
            if ref is not None and events.active:
                events.submit_failed(ref, error, path)
            raise error
        self._spend_created(hold, env.data.id)
        await self._task_created(env.data, path, webhook is not None, ref)
        return env.data

    async def _task_created(
        self, pred: Prediction, model: str, webhook: bool, ref: int | None
    ) -> None:
        self.tasks_created += 1
        self._waiting().created(pred.id, model, webhook=webhook)
        log.info("task %s created for %s", pred.id, model, extra={"task_id": pred.id})
        events = self._events
        if events.active:
            events.created(ref, pred, model, webhook=webhook)
        hook = self.on_task_created
        if hook is None:
            return
        try:
            result = hook(pred)
            if inspect.isawaitable(result):
                await result
        except Exception:
            # The task exists whatever the hook does; its id is still returned.
            log.exception(
                "on_task_created hook failed for task %s", pred.id, extra={"task_id": pred.id}
            )

    def deliver(self, prediction: Prediction) -> bool:
        """Hand a verified webhook delivery to this Client.

        Wakes the pending :meth:`wait` / :meth:`run` for that task at once, so it returns
        without another poll; with a ``share``, in whichever process it is pending. Only
        terminal statuses are taken. Duplicate and late deliveries are harmless; one that
        comes before its wait starts is remembered (a bounded number of them). Verify
        first: see ``verify_webhook``.

        Returns:
            Whether a wait for this task was pending.
        """
        if not prediction.done:
            return False
        waits = self._waiting()
        if self._share is not None:
            self._share.publish(prediction)  # wakes the wait in whichever process holds it
        return waits.deliver(prediction)

    async def get_result(self, task_id: str) -> Prediction:
        """Fetch a task's current state (one GET, retried on transient errors).

        Raises:
            NotFoundError: the id is unknown to the server.
        """
        check_task_id(task_id)
        env = await self._open().call(
            "GET", result_path(task_id), prediction_decoder, task_id=task_id
        )
        return _result_of(env.data, task_id)

    async def wait(
        self,
        task: Prediction | str,
        *,
        timeout: float | Unset | None = _UNSET,
    ) -> Prediction:
        """Poll a task until it ends; return it completed.

        Polling adapts to how long this model's tasks take, so it notices the end soon
        after it happens with few requests, within the Client's poll budget.

        Args:
            task: A Prediction from :meth:`submit`, or a task id (also from an earlier
                process).
            timeout: Seconds to wait; default ``timeouts.task_s``; ``None``: no limit.

        Raises:
            TaskFailedError: the task ended failed, cancelled, timed out or deleted.
            TaskTimeoutError: ``timeout`` passed (also a ``TimeoutError``); the task still
                runs on the server: wait again with its id later.
        """
        pred = task if isinstance(task, Prediction) else None
        task_id = check_task_id(task.id if isinstance(task, Prediction) else task)
        limit = self._timeouts.task_s if isinstance(timeout, Unset) else timeout
        if limit is not None and not (math.isfinite(limit) and limit > 0):
            raise ValidationError(
                "timeout", f"timeout: {limit!r}; allowed: a finite number > 0 or None"
            )
        events = self._events
        counted = events.active
        index = None
        if counted:
            index = current_index()
            events.waiting(task_id, pred, index)
        try:
            if pred is not None and pred.done:
                result = finished(pred)
            else:
                result = await self._waiting().wait(task_id, pred, limit)
        except BaseException as exc:
            if isinstance(exc, TaskFailedError):
                self._spend_ended(task_id, failed=True)  # a refund may come back to a budget
            if events.active:  # the end of a wait: told if anyone listens by now
                _tell_end(events, task_id, exc, limit, index, counted)
            raise
        self._spend_ended(task_id, failed=False)
        if events.active:
            events.completed(task_id, result, index if counted else current_index())
        return result

    async def run(
        self,
        model: ModelOrRequest,
        input: Mapping[str, Any] | None = None,
        *,
        timeout: float | Unset | None = _UNSET,
        webhook: str | None = None,
        sync: bool = False,
    ) -> Prediction:
        """Submit a task and wait for it: the one call most code needs.

        Holds one of the Client's in-flight slots from submit until the task ends.
        ``timeout`` counts from when the task was created. With ``sync=True`` the server
        holds the answer; if its wait runs out, this continues by polling the same task,
        never by submitting again.

        Raises:
            Everything :meth:`submit` and :meth:`wait` raise.
        """
        return await self._run_one(
            model, input, timeout=timeout, webhook=webhook, sync=sync, on_created=None
        )

    async def _run_one(
        self,
        model: ModelOrRequest,
        input: Mapping[str, Any] | None,
        *,
        timeout: float | Unset | None,
        webhook: str | None,
        sync: bool,
        on_created: Callable[[str], Awaitable[None]] | None,
    ) -> Prediction:
        """run(), with ``on_created`` told (and awaited) each task id the moment it exists."""
        flow = self.flow
        token = object()
        await flow.acquire_slot(token)
        try:
            try:
                pred = await self.submit(model, input, webhook=webhook, sync=sync)
            except WaveSpeedError as exc:
                if exc.task_id is None:
                    raise
                # An error answer that names a task: the task exists, so its id is reported
                # whatever comes next.
                if on_created is not None:
                    await on_created(exc.task_id)
                if not isinstance(exc, ServerError):
                    if self._events.active:
                        self._events.failed(exc.task_id, exc, current_index())
                    raise
                # A server-side error for a task that exists (e.g. a sync wait that ran out,
                # code 5004): follow it by polling, never by submitting again.
                log.info(
                    "task %s: %s; polling it", exc.task_id, exc, extra={"task_id": exc.task_id}
                )
                return await self.wait(exc.task_id, timeout=timeout)
            if on_created is not None:
                await on_created(pred.id)
            return await self.wait(pred, timeout=timeout)
        finally:
            flow.release_slot(token)

    # -- many tasks ----------------------------------------------------------------------

    def run_many(
        self,
        model: str | None,
        inputs: Iterable[Any] | AsyncIterable[Any],
        *,
        concurrency: int | None = None,
        ordered: bool = False,
        reorder_window: int | None = None,
        timeout: float | Unset | None = _UNSET,
        webhook: str | None = None,
        on_task_created: Callable[[int, str], Any] | None = None,
        submit_grace_s: float = DEFAULT_SUBMIT_GRACE_S,
        on_submitting: Callable[[int], Any] | None = None,
        on_not_sent: Callable[[int], Any] | None = None,
        budget_usd: Decimal | float | str | None = None,
    ) -> BulkRun[Any]:
        """Run many tasks; iterate the results as they complete.

        ::

            async with client.run_many(model, inputs, concurrency=64) as results:
                async for r in results:
                    print(r.index, r.id, r.ok, r.error or r.outputs)

        Args:
            model: The model path for dict inputs; ``None`` when every input carries its
                model (a typed request, or a ``(model, dict)`` pair).
            inputs: An iterable or async iterable of dicts, ``(model, dict)`` pairs or
                typed requests, consumed lazily: at most about ``2 * concurrency`` are held
                at once, so a generator of a million inputs runs in memory that does not
                grow.
            concurrency: Jobs at once (default: the Client's ``max_in_flight``). The
                Client's limits still apply across everything it runs.
            ordered: Yield in input order (through a reorder buffer of ``reorder_window``
                results, default ``4 * concurrency``) instead of completion order.
            timeout: Per-task deadline once created (default ``timeouts.task_s``).
            webhook: A webhook URL passed with every submit.
            on_task_created: Called with ``(index, task_id)`` the moment each task id
                exists, before polling: persist ids here. It may be async: it is awaited,
                to its end even when the batch is left meanwhile.
            submit_grace_s: When the block is left early, how long submits already sent
                may still take to answer (their ids go to ``abandoned``; the indexes still
                unanswered to ``unknown``).
            on_submitting: Called with ``index`` just before each send of the job's
                submit, after it waited for the Client's limits (shared ones included):
                record the intent here, so that a job still waiting when the process dies
                is known never to have been sent. A submit answered with a 429 (or a 503
                with ``Retry-After``, or that could not connect) is sent again later, and
                this is called again before that send. If it returns ``False``, the job
                is not sent: its result has ``id=None`` and a :class:`SubmitSkipped`
                error (counted as ``skipped`` in ``progress``). If it raises, the job is
                not sent: a WaveSpeedError becomes the job's result, any other error ends
                the batch. It may be async (awaited to its end).
            on_not_sent: Called with ``index`` after an answer to the job's submit that
                proves no task was created (a 429, a 503 with ``Retry-After``, a refusal,
                a connect failure): record that the job is re-sendable again, so that a
                process that dies while it waits to send it again leaves it so. It may be
                async (awaited to its end).
            budget_usd: USD this batch may commit (a ``Decimal``; an int, str or float is
                taken as written): a job is sent only while the quotes of the jobs sent,
                minus refunds known so far, plus its own stay within it; one that does
                not fit is a result with :class:`BudgetExceeded` (never sent). The
                Client's own ``FlowLimits.budget_usd`` applies too. See ``docs/spend.md``.

        One job's failure is a result with ``.error`` (a WaveSpeedError), never an
        exception that ends the batch; only a bad key (401) or a refused account (403;
        not an empty balance, which is the job's result) raises, from the ``async for``.
        """
        self._open()
        budget = (
            None
            if budget_usd is None
            else LocalBudget(usd_amount(budget_usd, "budget_usd"), "batch")
        )
        run = BulkRun(
            run_job(self, model, timeout=timeout, webhook=webhook, budget=budget),
            inputs,
            concurrency=default_concurrency(self._limits) if concurrency is None else concurrency,
            ordered=ordered,
            reorder_window=reorder_window,
            on_task_created=on_task_created,
            submit_grace_s=submit_grace_s,
            on_submitting=on_submitting,
            on_not_sent=on_not_sent,
        )
        run.progress.budget = budget or self._client_budget()
        return run

    def wait_many(
        self,
        task_ids: Iterable[str] | AsyncIterable[str],
        *,
        concurrency: int | None = None,
        ordered: bool = False,
        timeout: float | Unset | None = _UNSET,
    ) -> BulkRun[str]:
        """Collect results of tasks by id (e.g. from an earlier process's journal).

        The same interface as :meth:`run_many`: ``async with`` it and iterate; each
        result's ``input`` is the id. Each wait holds one of the Client's in-flight slots,
        like a :meth:`run`.
        """
        self._open()
        return BulkRun(
            wait_job(self, timeout=timeout),
            task_ids,
            concurrency=default_concurrency(self._limits) if concurrency is None else concurrency,
            ordered=ordered,
            reorder_window=None,
            on_task_created=None,
        )
