"""Props and attributes renamed for one vocabulary across clouds (see ``docs/vocabulary.md``). Standard library only.

A user upgrading from an older lepton-cdk who still passes an old prop name
gets one :class:`~lepton_cdk.core.ConstructValidationError` line naming the
new name, instead of Python's bare ``TypeError: unexpected keyword argument``;
reading an old attribute name gives an ``AttributeError`` naming the new one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import ConstructValidationError

RENAMED_IN = "0.2.0"
"""The release that gave both clouds one vocabulary."""

F = TypeVar("F", bound=Callable[..., Any])


def _construct_path(args: tuple[Any, ...]) -> str:
    # Decorated callables take (self or cls, scope, id, ...): the construct's path is the scope's path plus the id.
    if len(args) >= 3 and isinstance(args[2], str):
        scope_path = getattr(getattr(args[1], "node", None), "path", "")
        return f"{scope_path}/{args[2]}" if scope_path else args[2]
    return "construct"


def renamed_props(**old_to_new: str) -> Callable[[F], F]:
    """Decorate a construct's ``__init__`` (or a factory taking ``scope, id``) so old prop names fail with the new name.

    ``@renamed_props(machine_type="instance_type")``: passing
    ``machine_type=...`` raises ``ConstructValidationError("<path>:
    machine_type was renamed instance_type in 0.2.0; pass instance_type=...")``
    before anything is built; the signature type checkers see is unchanged.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def checked(*args: Any, **kwargs: Any) -> Any:
            old = [name for name in kwargs if name in old_to_new]
            if old:
                raise ConstructValidationError(_construct_path(args), [
                    f"{name} was renamed {old_to_new[name]} in {RENAMED_IN}; pass {old_to_new[name]}=... instead" for name in old])
            return fn(*args, **kwargs)

        return checked  # type: ignore[return-value]

    return decorate


class RenamedAttribute:
    """A class attribute standing where an old attribute name was: reading it raises ``AttributeError`` naming the new one.

    ``key_arn = RenamedAttribute("kms_key_id")`` in a class body.
    """

    def __init__(self, new_name: str) -> None:
        self.new_name = new_name
        self.old_name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.old_name = name

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        where = owner.__name__ if owner is not None else type(instance).__name__
        raise AttributeError(f"{where}.{self.old_name} was renamed {self.new_name} in {RENAMED_IN}; use .{self.new_name}")
