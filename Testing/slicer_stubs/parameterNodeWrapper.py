"""``slicer.parameterNodeWrapper`` stand-in (the wheel lacks it): typed properties over a
``vtkMRMLScriptedModuleNode``, stored the way Slicer stores them.

Supported field types: ``str``, ``int``, ``float``, ``bool``, MRML node classes and
``Union``/``Optional`` of node classes, optionally ``Annotated`` with :class:`Choice`,
:class:`WithinRange`, :class:`Minimum` or :class:`Maximum`. ``connectGui``/``disconnectGui``
do nothing here (no Qt); the .ui test checks the ``SlicerParameterName`` bindings instead.
"""

from __future__ import annotations

import types
import typing

import slicer

__all__ = ["parameterNodeWrapper", "Choice", "WithinRange", "Minimum", "Maximum"]


class Choice:
    def __init__(self, choices) -> None:
        self.choices = list(choices)

    def validate(self, value) -> None:
        if value not in self.choices:
            raise ValueError(f"{value!r} is not one of {self.choices}")


class WithinRange:
    def __init__(self, minimum, maximum) -> None:
        self.minimum, self.maximum = minimum, maximum

    def validate(self, value) -> None:
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"{value!r} is outside [{self.minimum}, {self.maximum}]")


class Minimum:
    def __init__(self, minimum) -> None:
        self.minimum = minimum

    def validate(self, value) -> None:
        if value < self.minimum:
            raise ValueError(f"{value!r} < {self.minimum}")


class Maximum:
    def __init__(self, maximum) -> None:
        self.maximum = maximum

    def validate(self, value) -> None:
        if value > self.maximum:
            raise ValueError(f"{value!r} > {self.maximum}")


def _nodeClasses(hint) -> tuple | None:
    """The node classes of a node type or a Union/Optional of node types, else None."""
    if isinstance(hint, type) and issubclass(hint, slicer.vtkMRMLNode):
        return (hint,)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if args and all(isinstance(a, type) and issubclass(a, slicer.vtkMRMLNode) for a in args):
            return tuple(args)
    return None


class _Field:
    def __init__(self, name: str, hint, default) -> None:
        self.name = name
        self.validators = []
        if typing.get_origin(hint) is typing.Annotated:
            hint, *annotations = typing.get_args(hint)
            self.validators = [a for a in annotations if hasattr(a, "validate")]
        self.type = hint
        self.nodeClasses = _nodeClasses(hint)
        if self.nodeClasses is None and hint not in (str, int, float, bool):
            raise TypeError(f"parameter {name!r}: type {hint!r} is not supported by the stub wrapper")
        self.default = default if default is not _MISSING else (None if self.nodeClasses else hint())

    def isIn(self, node) -> bool:
        return node.HasParameter(self.name)

    def write(self, node, value) -> None:
        if self.nodeClasses is not None:
            if value is not None and not isinstance(value, self.nodeClasses):
                raise TypeError(f"{self.name}: expected {self.nodeClasses}, got {type(value).__name__}")
            node.SetParameter(self.name, "")
            node.SetNodeReferenceID(self.name, value.GetID() if value is not None else None)
            return
        if not isinstance(value, self.type) and not (self.type is float and isinstance(value, int)):
            raise TypeError(f"{self.name}: expected {self.type.__name__}, got {type(value).__name__}")
        for validator in self.validators:
            validator.validate(value)
        node.SetParameter(self.name, ("True" if value else "False") if self.type is bool else str(value))

    def read(self, node):
        if self.nodeClasses is not None:
            return node.GetNodeReference(self.name)
        text = node.GetParameter(self.name)
        if self.type is bool:
            return text == "True"
        return self.type(text)


_MISSING = object()


def parameterNodeWrapper(cls):
    """Class decorator: ``Wrapped(parameterNode)`` exposes each annotated field as a property."""
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {name: _Field(name, hint, cls.__dict__.get(name, _MISSING)) for name, hint in hints.items()}

    def __init__(self, parameterNode) -> None:
        if parameterNode is None:
            raise ValueError("parameterNode must not be None")
        object.__setattr__(self, "parameterNode", parameterNode)
        for field in fields.values():
            if not field.isIn(parameterNode):
                field.write(parameterNode, field.default)

    namespace = {
        "__doc__": cls.__doc__,
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__init__": __init__,
        "allParameters": fields,
        "connectGui": lambda self, gui: ("stub-gui-tag", gui),
        "disconnectGui": lambda self, tag: None,
        "AddObserver": lambda self, *args: self.parameterNode.AddObserver(*args),
        "RemoveObserver": lambda self, *args: self.parameterNode.RemoveObserver(*args),
        "StartModify": lambda self: self.parameterNode.StartModify(),
        "EndModify": lambda self, wasModifying: self.parameterNode.EndModify(wasModifying),
    }
    for name, field in fields.items():
        namespace[name] = property(lambda self, f=field: f.read(self.parameterNode),
                                   lambda self, value, f=field: f.write(self.parameterNode, value))
    return type(cls.__name__, (), namespace)
