"""The Client's model catalogue: the models, their schemas, and the check of every input."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from wavespeed_async._core.catalog import Model
from wavespeed_async._core.errors import ValidationError
from wavespeed_async._core.requests import TypedRequest, request_body
from wavespeed_async._core.settings import CatalogConfig
from wavespeed_async._runtime.input_check import InputChecks, catalogue_fetch

if TYPE_CHECKING:
    from wavespeed_async._runtime.api import Api

__all__ = ["Catalog"]


class Catalog:
    """The catalogue calls of :class:`~wavespeed_async.Client`, and the check of each input.

    ``submit`` (so ``run``, ``run_many`` and everything built on them) checks each input
    before anything is sent.
    """

    base_url: str
    _catalog_config: CatalogConfig
    _input_checks: InputChecks | None

    def _open(self) -> Api:
        raise NotImplementedError

    @property
    def catalog(self) -> CatalogConfig:
        """How inputs are checked against the model catalogue."""
        return self._catalog_config

    def _checks(self) -> InputChecks:
        checks = self._input_checks
        if checks is None:
            self._open()  # the loop and the closed state are checked here
            config = self._catalog_config
            checks = self._input_checks = InputChecks(
                config,
                catalogue_fetch(self._open, config.fetch_timeout_s),
                base_url=self.base_url,
            )
        return checks

    async def models(self, *, type: str | None = None, refresh: bool = False) -> list[Model]:
        """Every model of the catalogue (``GET /api/v3/models``), in its order.

        Fetched once per ``CatalogConfig.ttl_s`` and shared by every call of this Client
        (and, through a file, by other processes): calling this often costs nothing.

        Args:
            type: Only models of this type (``"text-to-image"``, ``"text-to-video"``, ...).
            refresh: Fetch the catalogue now, whatever its age.

        Raises:
            TransportError, APIStatusError: the catalogue could not be fetched (and no
                catalogue younger than ``CatalogConfig.stale_if_error_s`` is at hand).
            DecodeError: the answer is not a catalogue.
        """
        found = await self._checks().models(refresh=refresh)
        return found if type is None else [m for m in found if m.type == type]

    async def model(self, model_id: str) -> Model | None:
        """One model of the catalogue, or ``None`` when it does not list ``model_id``.

        Raises:
            As :meth:`models`.
        """
        found = await self._checks().cache.models()
        return found.get(model_id)

    async def check_input(
        self, model: str | TypedRequest, input: Mapping[str, Any] | None = None
    ) -> list[ValidationError]:
        """Every problem that would make ``submit`` refuse this input, without sending it.

        The same check as ``submit``'s, with the same fail-open rules (see
        :class:`CatalogConfig`): a model the catalogue cannot check gives ``[]`` (and one
        warning is logged), or with ``check="strict"`` one problem naming ``model``.

        Returns:
            The problems, each a :class:`ValidationError` naming the field (``loras[1].scale``)
            and what is allowed; ``[]`` when ``submit`` would send it.
        """
        try:
            path, body = request_body(model, input)
        except ValidationError as exc:
            return [exc]
        return await self._checks().problems(path, body)

    async def _check_request(self, model: str, body: Mapping[str, Any]) -> None:
        """Raise the first problem that keeps ``body`` from being sent (``submit``'s check)."""
        checks = self._input_checks or self._checks()
        await checks.check(model, body)
