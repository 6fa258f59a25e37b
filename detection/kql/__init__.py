"""Kibana Query Language: parse a query once, compile it to a predicate over ECS documents."""

from .compiler import Predicate, compile_query
from .fieldnames import fields
from .parser import KqlSyntaxError, parse

__all__ = ["KqlSyntaxError", "Predicate", "compile_query", "fields", "parse"]
