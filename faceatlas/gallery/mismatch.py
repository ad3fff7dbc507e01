"""Embedding spaces that do not meet: which pack a name, pack or analyzer means, and what
``model_mismatch`` says (the setting that makes one pack's int8 or flip variant, the pack a server
must serve, or the re-embedding)."""

from __future__ import annotations

from faceatlas.engine import FaceAnalyzer, Pack, get_pack


def pack_of(pack: str | Pack | FaceAnalyzer) -> Pack:
    if isinstance(pack, FaceAnalyzer):
        return pack.pack
    return pack if isinstance(pack, Pack) else get_pack(pack)


_VARIANTS = {"int8", "flip"}  # recognizer_id suffixes that a setting chooses (FACEATLAS_RUNTIME, FACEATLAS_FLIP)


def _variant_settings(expected: str, got: str) -> list[str]:
    """The settings that make embeddings of ``got``'s space into ``expected``'s when the two are one
    pack's float/int8 or flip variants (``...+int8``, ``...+flip``); [] when they differ otherwise."""
    want, have = expected.split("+"), got.split("+")
    if [t for t in want if t not in _VARIANTS] != [t for t in have if t not in _VARIANTS]:
        return []
    settings = []
    if ("int8" in want) != ("int8" in have):
        settings.append("FACEATLAS_RUNTIME=int8" if "int8" in want else "FACEATLAS_RUNTIME=float (or unset it)")
    if ("flip" in want) != ("flip" in have):
        settings.append("FACEATLAS_FLIP=1" if "flip" in want else "FACEATLAS_FLIP=0 (or unset it)")
    return settings


def mismatch_message(holder: str, pack_name: str, expected: str, got: str, *, serving: str | None = None,
                     remedy: str | None = None) -> str:
    """What ``model_mismatch`` says when embeddings of recognizer ``got`` meet ``holder`` (``collection
    'x'``, ``album 'x'``, or a sentence of a store's) of pack ``pack_name`` (recognizer ``expected``),
    and how to resolve it: the setting, where the two are one pack's int8 or flip variants; else, where
    ``got`` is the space of the pack a server runs (``serving``), how to serve the collection's pack
    (one server serves one pack); else use that pack or reembed (``remedy``: the sentence saying what
    to do instead, for a holder that cannot be reembedded, as an album)."""
    head = f"{holder} holds embeddings of pack '{pack_name}' (recognizer {expected})"
    if holder.startswith("store "):
        head = f"{holder} was set up with pack '{pack_name}': its members hold embeddings of recognizer {expected}"
    got_text = (f"this server runs pack '{serving}' (recognizer {got})" if serving is not None
                else f"got embeddings of recognizer {got}")
    variant = _variant_settings(expected, got)
    if variant:
        where = "for the server (before `faceatlas serve`)" if serving is not None else "where they are made"
        return (f"{head}; {got_text}: the same pack with another int8/flip variant. Set "
                f"{' and '.join(variant)} {where}.")
    if serving is not None:
        reembed = "" if not holder.startswith("collection ") else (
            f", or reembed the collection to '{serving}' (`faceatlas gallery reembed`, from its kept crops)")
        owner = "store" if holder.startswith("store ") else holder.split(" ", 1)[0]
        return (f"{head}; {got_text}. One server serves one pack: run it with the {owner}'s, "
                f"`faceatlas serve --pack {pack_name}` (or FACEATLAS_PACK={pack_name}){reembed}.")
    if remedy is not None:
        return f"{head}; {got_text}. {remedy}"
    return (f"{head}; {got_text}. Make the embeddings with pack '{pack_name}' (--pack {pack_name} or "
            f"FACEATLAS_PACK={pack_name}), or reembed this collection (`faceatlas gallery reembed`).")
