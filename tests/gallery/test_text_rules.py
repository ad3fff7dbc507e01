"""The gallery's rules for one-line names and for the size of metadata, on a real gallery."""

from __future__ import annotations

import unicodedata

import pytest

from faceatlas.errors import InvalidArgument
from faceatlas.gallery import Gallery
from faceatlas.gallery.rules import METADATA_MAX_BYTES

# Each is a line break, a terminal escape or a reversal of what follows it on the line; the C0 ones
# (newline, ESC) were refused already, these were stored and shown raw by `gallery list` and the console.
HIDDEN = {"nel": "\x85", "csi": "\x9b", "c1-first": "\x80", "c1-last": "\x9f", "line-separator": "\u2028",
          "paragraph-separator": "\u2029", "lre": "\u202a", "rlo": "\u202e", "lri": "\u2066", "pdi": "\u2069"}


@pytest.mark.parametrize("hidden", HIDDEN.values(), ids=HIDDEN.keys())
def test_a_name_holding_a_line_break_or_bidi_control_is_refused(gallery: Gallery, hidden: str) -> None:
    """A subject's name is one line without control characters: C1 controls (NEL is a line break,
    CSI a terminal escape), the line and paragraph separators and the bidi overrides and isolates
    (an unclosed U+202E showed the rest of a console line reversed) are refused as a newline is,
    on every write, and nothing is stored."""
    gallery.create_collection("c", "scrfd-mbf")
    gallery.add_subject("c", "ok", name="Ok")
    writes = [lambda: gallery.add_subject("c", "s", name=f"Ann{hidden}2J"),
              lambda: gallery.update_subject("c", "ok", name=f"x{hidden}gnp.exe"),
              lambda: gallery.for_tenant(f"t{hidden}")]
    for write in writes:
        with pytest.raises(InvalidArgument, match="without control characters"):
            write()
    assert [(s.external_id, s.name) for s in gallery.list_subjects("c").items] == [("ok", "Ok")]
    # a name of other scripts, accents and emoji is one line
    assert gallery.update_subject("c", "ok", name="Zoë 中文 \u05e9\u05dc\u05d5\u05dd 👋").name == "Zoë 中文 שלום 👋"


def test_the_metadata_limit_counts_utf8_bytes(gallery: Gallery) -> None:
    """The 64 KiB of metadata were measured on JSON with every other character than ASCII escaped
    (``\\u4e2d``, 6 bytes): 33 KB of Chinese text (11,000 characters of 3 bytes) was refused, CJK got a
    third of the room, emoji a sixth. The limit is the JSON's size in UTF-8."""
    gallery.create_collection("c", "scrfd-mbf")
    chinese = {"note": "中" * 11000}  # 33,000 bytes of UTF-8, 66,000 escaped
    assert gallery.add_subject("c", "zh", metadata=chinese).metadata == chinese
    emoji = {"note": "👋" * 16000}  # 64,000 bytes of UTF-8, 192,000 escaped
    assert gallery.update_subject("c", "zh", metadata=emoji).metadata == emoji
    over = {"note": "中" * (METADATA_MAX_BYTES // 3)}  # a few bytes over with its JSON's quotes and key
    with pytest.raises(InvalidArgument, match=f"at most {METADATA_MAX_BYTES} bytes of JSON"):
        gallery.add_subject("c", "big", metadata=over)
    assert gallery.get_subject("c", "zh").metadata == emoji


def test_a_subjects_name_is_kept_in_composed_form(gallery: Gallery) -> None:
    """A subject's name typed with a combining accent (e + U+0301, as macOS file names give it) was
    stored as typed, so two subjects both shown as "José" compared and sorted apart; it is kept in
    Unicode's composed form (NFC), as album people's names and tenants' names are, on every write."""
    decomposed, composed = "Jose\u0301", "Jos\u00e9"
    gallery.create_collection("c", "scrfd-mbf")
    assert gallery.add_subject("c", "a", name=decomposed).name == composed
    gallery.add_subject("c", "b")
    assert gallery.update_subject("c", "b", name=f"Ana {decomposed}").name == f"Ana {composed}"
    gallery.ensure_subject("c", "c", name=decomposed)
    assert [s.name for s in gallery.list_subjects("c").items] == [composed, f"Ana {composed}", composed]


def test_a_name_is_measured_as_kept_and_as_given(gallery: Gallery) -> None:
    """Composing (NFC) can lengthen a name: U+FB2C is three characters composed, so 300 of them
    passed the 300-character check and then failed the column on PostgreSQL (a 500); 300 accents
    typed apart (600 characters, 300 composed) passed, and a caller storing the text as given
    overflowed its column. Each form must fit: both are refused as too long, nothing is stored."""
    gallery.create_collection("c", "scrfd-mbf")
    for name in ("\ufb2c" * 300, "e\u0301" * 300):
        with pytest.raises(InvalidArgument, match="at most 300 characters"):
            gallery.add_subject("c", "s", name=name)
    assert gallery.list_subjects("c").items == []
    assert gallery.add_subject("c", "s", name="\ufb2c" * 100).name == unicodedata.normalize("NFC", "\ufb2c" * 100)


def test_a_subjects_name_is_kept_without_its_surrounding_blanks(gallery: Gallery) -> None:
    """A subject's name kept its outer blanks ("  padded  " as given) while a tenant's name and an
    album person's were stripped: the rule (check_text) strips them, on every write; blanks alone are
    the empty name, and a line break at an end is still refused, not stripped away."""
    gallery.create_collection("c", "scrfd-mbf")
    assert gallery.add_subject("c", "a", name="  padded  ").name == "padded"
    gallery.add_subject("c", "b")
    assert gallery.update_subject("c", "b", name=" Ann Lee   ").name == "Ann Lee"
    gallery.ensure_subject("c", "c", name=" Jose\u0301 ")
    assert [s.name for s in gallery.list_subjects("c").items] == ["padded", "Ann Lee", "Jos\u00e9"]
    assert gallery.update_subject("c", "b", name="   ").name == ""
    with pytest.raises(InvalidArgument, match="without control characters"):
        gallery.update_subject("c", "a", name="Ann\n")
    assert gallery.get_subject("c", "a").name == "padded"
