"""Staging of the Flipkart product catalogue: every CSV field parsed once into `Product`.

The catalogue (PromptCloud, CC BY-SA 4.0; see `shopflow/data/ATTRIBUTION.md`) ships gzipped inside the
package. Quirks handled here (see the data README):

- both prices empty -> `price` None, the product is kept (it is listed but not sellable);
- duplicate `pid` -> one row kept (the most complete; ties: the first in file order), the others
  go to the rejects with the reason, so nothing disappears silently;
- `No rating available` -> rating None;
- flat category trees (just the product name, no ` >> `) -> `category` and `category_path` None;
- a last category segment cut off with `...` is dropped; so is a leaf that merely repeats the name;
- NBSP and runs of spaces in names, brands and category levels are collapsed to one space;
- fit and colour words as brand (`Regular`, `Slim Fit`, `Black`, `Light Pink`, ...) and an empty
  brand -> `brand` None;
- the category tree is a JSON array holding one string.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from importlib import resources
from typing import Final, TextIO

from shopflow.contracts import Product
from shopflow.errors import ShopflowError

CATALOGUE_RESOURCE: Final = "flipkart_products_20k.csv.gz"
CATALOGUE_COLUMNS: Final = (
    "uniq_id",
    "product_name",
    "product_category_tree",
    "pid",
    "retail_price",
    "discounted_price",
    "is_FK_Advantage_product",
    "product_rating",
    "overall_rating",
    "brand",
)
NO_RATING: Final = "No rating available"
CATEGORY_SEPARATOR: Final = " >> "
TRUNCATION_MARK: Final = "..."

#: The crawl ran from 2015-12 to 2016-06; listing dates are spread over that window.
LISTING_WINDOW_START: Final = date(2015, 12, 1)
LISTING_WINDOW_DAYS: Final = (date(2016, 6, 30) - LISTING_WINDOW_START).days + 1

#: Words that, when a brand consists only of them, mean the crawler took a fit or colour for the brand.
_BRAND_NOISE_WORDS: Final = frozenset(
    {
        # fits
        "regular", "slim", "skinny", "relaxed", "comfort", "fit", "straight", "loose", "tapered",
        # shades
        "light", "dark",
        # colours
        "black", "white", "red", "pink", "purple", "blue", "beige", "multicolor", "multicolour",
        "grey", "gray", "maroon", "brown", "yellow", "green", "orange", "peach", "navy", "cream",
        "gold", "golden", "silver", "sky", "olive", "magenta", "violet", "khaki",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class CatalogueItem:
    """One staged catalogue row: the `Product` plus the catalogue fields the shop DB does not hold."""

    product: Product
    uniq_id: str
    record_number: int
    rating: float | None
    overall_rating: float | None
    fk_advantage: bool


@dataclass(frozen=True, slots=True)
class CatalogueReject:
    """A catalogue row that could not be staged, with the reason and the raw fields."""

    record_number: int
    uniq_id: str | None
    pid: str | None
    reason: str
    raw: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CatalogueStaging:
    """The staged catalogue: one item per distinct `pid`, and every row that was not staged."""

    items: tuple[CatalogueItem, ...]
    rejects: tuple[CatalogueReject, ...]

    @property
    def products(self) -> tuple[Product, ...]:
        """The staged products, in file order."""
        return tuple(item.product for item in self.items)

    @property
    def sellable_products(self) -> tuple[Product, ...]:
        """The staged products that have a price."""
        return tuple(item.product for item in self.items if item.product.price is not None)


class _RowError(ValueError):
    """A field that cannot be parsed; the message is the reject reason."""


def normalise_whitespace(text: str) -> str:
    """Collapse NBSP, tabs and runs of spaces into single spaces, and trim."""
    return " ".join(text.split())


def clean_brand(raw_brand: str) -> str | None:
    """The brand, or None when empty or only fit/colour words."""
    brand = normalise_whitespace(raw_brand)
    if not brand:
        return None
    if all(word in _BRAND_NOISE_WORDS for word in brand.lower().split()):
        return None
    return brand


def category_levels(raw_tree: str, product_name: str) -> list[str]:
    """The clean category levels of a JSON-array category tree ([] for a flat tree)."""
    try:
        tree = json.loads(raw_tree)
    except json.JSONDecodeError:
        raise _RowError("product_category_tree is not a JSON array") from None
    if not isinstance(tree, list) or len(tree) != 1 or not isinstance(tree[0], str):
        raise _RowError("product_category_tree is not a JSON array of one string")
    path = tree[0]
    if ">>" not in path:
        return []  # a flat tree is only the product name: no hierarchy to stage
    levels = [normalise_whitespace(level) for level in path.split(">>")]
    levels = [level for level in levels if level]
    if levels and levels[-1].endswith(TRUNCATION_MARK):
        levels.pop()
    if len(levels) > 1 and levels[-1].casefold() == product_name.casefold():
        levels.pop()
    return levels


def _price_inr(raw: str, column: str) -> float | None:
    text = raw.strip()
    if not text:
        return None
    if not text.isdigit():
        raise _RowError(f"{column} is not whole rupees: {text[:20]!r}")
    return float(int(text))


def _rating(raw: str, column: str) -> float | None:
    text = raw.strip()
    if text == NO_RATING:
        return None
    try:
        value = float(text)
    except ValueError:
        raise _RowError(f"{column} is neither a number nor {NO_RATING!r}: {text[:20]!r}") from None
    if not 0.0 <= value <= 5.0:
        raise _RowError(f"{column} outside 0..5: {text[:20]!r}")
    return value


def _flag(raw: str) -> bool:
    text = raw.strip().upper()
    if text not in ("TRUE", "FALSE"):
        raise _RowError(f"is_FK_Advantage_product is not TRUE/FALSE: {raw[:20]!r}")
    return text == "TRUE"


def listing_date(pid: str) -> date:
    """A listing date within the crawl window, derived from the pid alone (stable across runs)."""
    digest = hashlib.sha256(pid.encode()).digest()
    return LISTING_WINDOW_START + timedelta(days=int.from_bytes(digest[:4]) % LISTING_WINDOW_DAYS)


def _stage_row(fields: dict[str, str], record_number: int) -> CatalogueItem:
    uniq_id = fields["uniq_id"].strip()
    pid = fields["pid"].strip()
    name = normalise_whitespace(fields["product_name"])
    if not uniq_id:
        raise _RowError("uniq_id is empty")
    if not pid:
        raise _RowError("pid is empty")
    if not name:
        raise _RowError("product_name is empty")
    retail_price_inr = _price_inr(fields["retail_price"], "retail_price")
    discounted_price_inr = _price_inr(fields["discounted_price"], "discounted_price")
    if (
        retail_price_inr is not None
        and discounted_price_inr is not None
        and discounted_price_inr > retail_price_inr
    ):
        raise _RowError("discounted_price is above retail_price")
    levels = category_levels(fields["product_category_tree"], name)
    product = Product(
        product_id=pid,
        product_name=name,
        category=levels[0] if levels else None,
        category_path=CATEGORY_SEPARATOR.join(levels) if levels else None,
        brand=clean_brand(fields["brand"]),
        price=discounted_price_inr if discounted_price_inr is not None else retail_price_inr,
        retail_price_inr=retail_price_inr,
        date=listing_date(pid),
    )
    return CatalogueItem(
        product=product,
        uniq_id=uniq_id,
        record_number=record_number,
        rating=_rating(fields["product_rating"], "product_rating"),
        overall_rating=_rating(fields["overall_rating"], "overall_rating"),
        fk_advantage=_flag(fields["is_FK_Advantage_product"]),
    )


def _completeness(item: CatalogueItem) -> tuple[bool, int, bool]:
    product = item.product
    depth = product.category_path.count(CATEGORY_SEPARATOR) + 1 if product.category_path else 0
    return (product.price is not None, depth, product.brand is not None)


def stage_rows(records: Iterable[list[str]]) -> CatalogueStaging:
    """Stage CSV records (the header first) into products and rejects.

    Of rows sharing a pid the most complete one is kept (has a price, then the deeper clean
    category path, then has a brand), ties going to the first in file order: downstream keys
    products by `product_id`, and this choice keeps the row that sells and classifies best while
    staying independent of anything but the file's content.
    """
    rows = iter(records)
    header = next(rows, None)
    if header is None:
        raise ShopflowError("the Flipkart catalogue is empty: expected a CSV header")
    header = [column.strip().lstrip("\ufeff") for column in header]
    if tuple(header) != CATALOGUE_COLUMNS:
        raise ShopflowError(
            f"unexpected Flipkart catalogue columns {header!r}; expected {list(CATALOGUE_COLUMNS)!r}"
        )
    kept: dict[str, CatalogueItem] = {}
    raw_by_record: dict[int, tuple[str, ...]] = {}
    rejects: list[CatalogueReject] = []
    for record_number, raw in enumerate(rows, start=1):
        if not any(value.strip() for value in raw):
            continue  # a blank line is not a record
        if len(raw) != len(CATALOGUE_COLUMNS):
            rejects.append(
                CatalogueReject(
                    record_number,
                    None,
                    None,
                    f"expected {len(CATALOGUE_COLUMNS)} fields, got {len(raw)}",
                    tuple(raw),
                )
            )
            continue
        fields = dict(zip(CATALOGUE_COLUMNS, raw, strict=True))
        try:
            item = _stage_row(fields, record_number)
        except _RowError as exc:
            rejects.append(
                CatalogueReject(
                    record_number,
                    fields["uniq_id"].strip() or None,
                    fields["pid"].strip() or None,
                    str(exc),
                    tuple(raw),
                )
            )
            continue
        pid = item.product.product_id
        raw_by_record[record_number] = tuple(raw)
        previous = kept.get(pid)
        if previous is None:
            kept[pid] = item
            continue
        winner, loser = (
            (item, previous) if _completeness(item) > _completeness(previous) else (previous, item)
        )
        kept[pid] = winner
        rejects.append(
            CatalogueReject(
                loser.record_number,
                loser.uniq_id,
                pid,
                f"duplicate pid {pid}: kept the more complete or earlier row uniq_id {winner.uniq_id}",
                raw_by_record[loser.record_number],
            )
        )
    items = sorted(kept.values(), key=lambda staged: staged.record_number)
    rejects.sort(key=lambda reject: reject.record_number)
    return CatalogueStaging(items=tuple(items), rejects=tuple(rejects))


def parse_catalogue_csv(text: TextIO) -> CatalogueStaging:
    """Stage a catalogue CSV from a text stream opened with `newline=""` (CRLF is fine)."""
    return stage_rows(csv.reader(text))


@lru_cache(maxsize=1)
def load_catalogue() -> CatalogueStaging:
    """The staged catalogue shipped in the package (parsed once per process)."""
    resource = resources.files("shopflow").joinpath("data", CATALOGUE_RESOURCE)
    try:
        with (
            resource.open("rb") as compressed,
            gzip.open(compressed, "rb") as raw,
            io.TextIOWrapper(raw, encoding="utf-8", newline="") as text,
        ):
            return parse_catalogue_csv(text)
    except FileNotFoundError:
        raise ShopflowError(
            f"the Flipkart catalogue {CATALOGUE_RESOURCE} is missing from the shopflow package; "
            "reinstall with `make setup`"
        ) from None
