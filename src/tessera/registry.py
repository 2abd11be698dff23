"""One registry for every component a config names: preprocessors, encoders, fusions, tasks.

The timm pattern: a class registers itself under a name with a decorator, and a config
creates it by that name. Creation checks the options against the constructor, so a typo
in YAML fails at build time listing what would have been accepted, instead of as a
``TypeError`` deep in a constructor. The built-in components are imported on first use,
so importing a registry costs nothing and a test can register its own component first.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable, Generic, Iterator, Sequence, TypeVar

from tessera.errors import SchemaError

T = TypeVar("T")


def check_options(cls: type, options: dict[str, Any], *, what: str, supplied: tuple[str, ...] = ()) -> None:
    """Raise SchemaError for unknown or missing constructor options.

    ``supplied`` names constructor parameters the factory fills in itself (e.g. ``columns``).
    """
    params = {k: p for k, p in inspect.signature(cls.__init__).parameters.items() if k != "self" and k not in supplied}
    params = {k: p for k, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    known = list(params)
    unknown = [k for k in options if k not in params]
    if unknown:
        raise SchemaError(f"unknown option(s) {unknown} for {what}; known options: {known}")
    missing = [k for k, p in params.items() if p.default is inspect.Parameter.empty and k not in options]
    if missing:
        raise SchemaError(f"{what} needs option(s) {missing}; known options: {known}")


class Registry(Generic[T]):
    """Classes of one kind by name. ``kind`` names them in errors ("encoder", "modality" ...).

    ``builtins`` is the module whose import registers the built-in classes; ``attribute``,
    when given, is set on each registered class to its name (``Encoder.encoder_name``).
    Iteration follows registration order; :meth:`known` is sorted, for messages.
    """

    def __init__(self, kind: str, builtins: str, *, attribute: str | None = None) -> None:
        self.kind = kind
        self._builtins = builtins
        self._attribute = attribute
        self._classes: dict[str, type[T]] = {}
        self._aliases: dict[str, str] = {}
        self._loaded = False

    def register(self, name: str, *, aliases: Sequence[str] = ()) -> Callable[[type[T]], type[T]]:
        """Class decorator; ``aliases`` are other names config may use for the same class."""

        def deco(cls: type[T]) -> type[T]:
            if self._attribute:
                setattr(cls, self._attribute, name)
            self._classes[name] = cls
            self._aliases.update({a: name for a in aliases})
            return cls

        return deco

    def unregister(self, name: str) -> None:
        """Forget ``name`` (and its aliases): for components registered only for a while, as tests do."""
        self._classes.pop(name, None)
        self._aliases = {a: n for a, n in self._aliases.items() if n != name}

    def _load_builtins(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # before the import: the modules it imports register into this registry
        try:
            importlib.import_module(self._builtins)
        except BaseException:
            self._loaded = False
            raise

    def canonical(self, name: str) -> str:
        """The registered name behind ``name`` (itself, or what it is an alias of)."""
        self._load_builtins()
        return self._aliases.get(name, name)

    def get(self, name: str) -> type[T]:
        """The class registered under ``name`` (or an alias); SchemaError listing the known names."""
        name = self.canonical(name)
        if name not in self._classes:
            raise SchemaError(f"unknown {self.kind} {name!r}; known: {self.known()}")
        return self._classes[name]

    def create(self, name: str, *args: Any, context: str | None = None, **options: Any) -> T:
        """An instance of ``name``: ``args`` are what the caller supplies itself (the constructor's
        first parameters, e.g. columns), ``options`` come from config and are checked.

        ``context`` replaces "<kind> '<name>'" in option errors when the user knows the
        component by something else (e.g. "image column(s) ['photo']").
        """
        cls = self.get(name)
        params = [k for k in inspect.signature(cls.__init__).parameters if k != "self"]
        what = context or f"{self.kind} {self.canonical(name)!r}"
        check_options(cls, options, what=what, supplied=tuple(params[: len(args)]))
        return cls(*args, **options)

    def known(self) -> list[str]:
        self._load_builtins()
        return sorted(self._classes)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.canonical(name) in self._classes

    def __getitem__(self, name: str) -> type[T]:
        return self.get(name)

    def __iter__(self) -> Iterator[str]:
        self._load_builtins()
        return iter(list(self._classes))

    def __len__(self) -> int:
        self._load_builtins()
        return len(self._classes)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._classes)})"
