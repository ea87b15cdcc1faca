"""Alpaca's error answers: an HTTP status and a JSON body with `code` and `message`
(shared/reference/http-apis.md §1.3)."""

from __future__ import annotations

from typing import Any

__all__ = ["Drop", "Reply", "not_found", "unprocessable"]


class Reply(Exception):
    """An Alpaca error answer: HTTP status and a JSON body with `code` and `message`."""

    def __init__(self, status: int, code: int, message: str, **extra: Any) -> None:
        self.status, self.body = status, {"code": code, "message": message, **extra}
        super().__init__(message)


def unprocessable(message: str, code: int = 40010001) -> Reply:
    """422: 40010001 for a malformed request, 42210000 for an order Alpaca's rules refuse."""
    return Reply(422, code, message)


def not_found(message: str) -> Reply:
    return Reply(404, 40410000, message)


class Drop(Exception):
    """Close the connection without answering."""
