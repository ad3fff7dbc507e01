"""The client's errors: :class:`FaceAtlasClientError` and its subclasses, each with a ``code``
named as the server's codes are."""

from __future__ import annotations


class FaceAtlasClientError(Exception):
    """Every error of this client (catch this one): what it cannot send (an API key or id no
    server accepts, a file too large), an answer that is not FaceAtlas's (a proxy's redirect or
    login page), and the subclasses :class:`FaceAtlasApiError` (the server answered an error) and
    :class:`FaceAtlasTransportError` (no answer). ``code`` names it as the server's codes do."""

    code = "client_error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class FaceAtlasApiError(FaceAtlasClientError):
    """An error answer of the server, with its stable ``code``, HTTP status and Retry-After (seconds)."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None) -> None:
        super().__init__(message, code)
        self.status = status
        self.retry_after = retry_after

    def __str__(self) -> str:
        wait = f" (retry in {self.retry_after:g} s)" if self.retry_after is not None else ""
        return f"{self.status} {self.code}: {self.message}{wait}"


class FaceAtlasTransportError(FaceAtlasClientError):
    """No answer: the server refused or dropped the connection, or sent none within the client's
    ``timeout`` (``code`` ``timeout``). A write may have been applied all the same: retry it with
    the same ``idempotency_key`` to apply it once."""

    code = "server_unreachable"


def _not_ours(detail: str) -> FaceAtlasClientError:
    return FaceAtlasClientError(f"the answer is not the FaceAtlas API's ({detail}): is the server URL that "
                                "of a FaceAtlas server, of a version this client knows?", "unexpected_answer")
