"""The one Registry: register, create with option checking, known names, aliases, lazy built-ins."""

from __future__ import annotations

import sys

import pytest

from tessera.encoders import ENCODERS, register_encoder
from tessera.encoders.base import Encoder
from tessera.errors import SchemaError
from tessera.fusion import FUSIONS
from tessera.preprocess import PREPROCESSORS, create_preprocessor
from tessera.registry import Registry
from tessera.tasks import TASKS


class Widget:
    def __init__(self, columns: list[str], size: int, colour: str = "red") -> None:
        self.columns, self.size, self.colour = columns, size, colour


@pytest.fixture
def widgets() -> Registry:
    reg: Registry = Registry("widget", "tessera.errors", attribute="widget_name")  # any importable module: no built-ins
    reg.register("widget", aliases=("gadget",))(Widget)
    return reg


def test_register_create_and_lookup(widgets):
    w = widgets.create("widget", ["a"], size=3)
    assert (w.columns, w.size, w.colour) == (["a"], 3, "red")
    assert Widget.widget_name == "widget"  # the registered name, set on the class
    assert widgets.get("widget") is Widget and widgets["widget"] is Widget
    assert "widget" in widgets and "gadget" in widgets and "nothing" not in widgets and 3 not in widgets
    assert widgets.known() == ["widget"] and list(widgets) == ["widget"] and len(widgets) == 1
    assert widgets.canonical("gadget") == "widget" and widgets.create("gadget", ["b"], size=1).columns == ["b"]


def test_errors_name_what_would_have_been_accepted(widgets):
    with pytest.raises(SchemaError, match=r"unknown widget 'gizmo'; known: \['widget'\]"):
        widgets.create("gizmo", ["a"], size=1)
    # positional arguments are the caller's (columns): not options, so not listed as known options
    with pytest.raises(SchemaError, match=r"unknown option\(s\) \['sise'\] for widget 'widget'; known options: \['size', 'colour'\]"):
        widgets.create("widget", ["a"], sise=1)
    with pytest.raises(SchemaError, match=r"widget 'widget' needs option\(s\) \['size'\]"):
        widgets.create("widget", ["a"])
    with pytest.raises(SchemaError, match=r"unknown option\(s\) \['x'\] for the photo column"):
        widgets.create("widget", ["a"], context="the photo column", size=1, x=2)


def test_builtins_are_imported_on_first_use_only(tmp_path, monkeypatch):
    (tmp_path / "lazy_registry_home.py").write_text(
        "from tessera.registry import Registry\nREGISTRY = Registry('thing', 'lazy_registry_builtins')\n"
    )
    (tmp_path / "lazy_registry_builtins.py").write_text(
        "from lazy_registry_home import REGISTRY\n\n@REGISTRY.register('builtin')\nclass Builtin:\n    def __init__(self, n: int = 1):\n        self.n = n\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("lazy_registry_home", "lazy_registry_builtins"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import lazy_registry_home

    assert "lazy_registry_builtins" not in sys.modules  # creating the registry imported nothing
    assert lazy_registry_home.REGISTRY.create("builtin", n=2).n == 2
    assert "lazy_registry_builtins" in sys.modules and lazy_registry_home.REGISTRY.known() == ["builtin"]


def test_the_four_component_kinds_share_the_class():
    for registry, expected in ((PREPROCESSORS, "image"), (ENCODERS, "image_cnn"), (FUSIONS, "late"), (TASKS, "regression")):
        assert isinstance(registry, Registry) and expected in registry


def test_encoder_decorator_keeps_working_for_new_encoders():
    @register_encoder("registry_test_encoder")
    class Tiny(Encoder):
        def __init__(self, dim: int = 4) -> None:
            super().__init__()
            self.output_dim = dim

    try:
        assert Tiny.encoder_name == "registry_test_encoder" and ENCODERS["registry_test_encoder"] is Tiny
        from tessera.encoders import create_encoder

        assert create_encoder("registry_test_encoder", dim=6).output_dim == 6
    finally:
        ENCODERS._classes.pop("registry_test_encoder")


def test_preprocessor_errors_name_the_columns():
    with pytest.raises(SchemaError, match=r"unknown option\(s\) \['sizee'\] for image column\(s\) \['photo'\]"):
        create_preprocessor("image", ["photo"], sizee=3)
    with pytest.raises(SchemaError, match=r"unknown modality 'smell'; known: \[.*'image'"):
        create_preprocessor("smell", ["x"])
