"""Staging of the Flipkart catalogue: one test per quirk on inline rows, one over the shipped file."""

from __future__ import annotations

import io
import json
from datetime import date

import pytest

from shopflow.contracts import Product
from shopflow.errors import ShopflowError
from shopflow.sources.flipkart import (
    CATALOGUE_COLUMNS,
    LISTING_WINDOW_DAYS,
    LISTING_WINDOW_START,
    CatalogueStaging,
    load_catalogue,
    parse_catalogue_csv,
)

HEADER = ",".join(CATALOGUE_COLUMNS)


def _row(
    *,
    uniq_id: str = "u1",
    name: str = "Alisha Solid Women's Cycling Shorts",
    tree: str = "Clothing >> Women's Clothing >> Shorts >> Alisha Solid Women's Cycling Shorts",
    pid: str = "SRTEH2FF9KEDEFGF",
    retail: str = "999",
    discounted: str = "379",
    fk_advantage: str = "FALSE",
    rating: str = "No rating available",
    brand: str = "Alisha",
) -> str:
    tree_json = json.dumps([tree])
    fields = [
        uniq_id,
        name,
        tree_json,
        pid,
        retail,
        discounted,
        fk_advantage,
        rating,
        rating,
        brand,
    ]
    return ",".join('"' + field.replace('"', '""') + '"' for field in fields)


def _stage(*rows: str) -> CatalogueStaging:
    return parse_catalogue_csv(io.StringIO("\r\n".join([HEADER, *rows]) + "\r\n", newline=""))


def _only(staging: CatalogueStaging) -> Product:
    assert len(staging.products) == 1, staging.rejects
    return staging.products[0]


def test_a_clean_row_becomes_a_product_with_the_discounted_price() -> None:
    product = _only(_stage(_row()))
    assert product.product_id == "SRTEH2FF9KEDEFGF"
    assert product.product_name == "Alisha Solid Women's Cycling Shorts"
    assert product.price == 379.0
    assert product.retail_price_inr == 999.0
    assert product.category == "Clothing"
    assert product.category_path == "Clothing >> Women's Clothing >> Shorts"
    assert product.brand == "Alisha"
    assert product.date >= LISTING_WINDOW_START
    assert (product.date - LISTING_WINDOW_START).days < LISTING_WINDOW_DAYS


def test_listing_date_depends_only_on_the_pid() -> None:
    first = _only(_stage(_row(uniq_id="a", name="One")))
    second = _only(_stage(_row(uniq_id="b", name="Other", retail="5", discounted="")))
    assert first.date == second.date
    dates = {_only(_stage(_row(pid=f"PID{i:013d}"))).date for i in range(40)}
    assert len(dates) > 20  # spread over the crawl window, not one constant


def test_both_prices_empty_keeps_the_product_without_a_price() -> None:
    staging = _stage(_row(retail="", discounted=""))
    product = _only(staging)
    assert product.price is None
    assert product.retail_price_inr is None
    assert staging.sellable_products == ()


def test_only_retail_price_is_the_price() -> None:
    product = _only(_stage(_row(retail="1499", discounted="")))
    assert product.price == 1499.0
    assert product.retail_price_inr == 1499.0


def test_non_numeric_price_is_rejected_with_a_reason() -> None:
    staging = _stage(_row(retail="12a"))
    assert staging.products == ()
    assert "retail_price" in staging.rejects[0].reason
    assert staging.rejects[0].pid == "SRTEH2FF9KEDEFGF"


def test_discount_above_retail_is_rejected() -> None:
    staging = _stage(_row(retail="100", discounted="200"))
    assert staging.products == ()
    assert "above retail" in staging.rejects[0].reason


def test_duplicate_pid_keeps_one_and_rejects_the_other_with_the_reason() -> None:
    staging = _stage(
        _row(uniq_id="first", name="Hako Charger A"),
        _row(uniq_id="second", name="Hako Charger B"),
    )
    assert [item.uniq_id for item in staging.items] == ["first"]
    assert len(staging.rejects) == 1
    reject = staging.rejects[0]
    assert reject.uniq_id == "second"
    assert "duplicate pid SRTEH2FF9KEDEFGF" in reject.reason
    assert "first" in reject.reason
    assert reject.raw[0] == "second"


def test_duplicate_pid_prefers_the_priced_row_over_an_earlier_unpriced_one() -> None:
    staging = _stage(
        _row(uniq_id="unpriced", retail="", discounted=""),
        _row(uniq_id="priced"),
    )
    assert [item.uniq_id for item in staging.items] == ["priced"]
    assert [reject.uniq_id for reject in staging.rejects] == ["unpriced"]


def test_no_rating_available_is_none_and_numbers_are_parsed() -> None:
    unrated = _stage(_row(rating="No rating available")).items[0]
    rated = _stage(_row(rating="4.5")).items[0]
    assert unrated.rating is None
    assert unrated.overall_rating is None
    assert rated.rating == 4.5
    assert rated.overall_rating == 4.5


def test_garbage_rating_is_rejected() -> None:
    assert "product_rating" in _stage(_row(rating="great")).rejects[0].reason


def test_flat_tree_has_no_category() -> None:
    product = _only(
        _stage(_row(name="Vishudh Printed Kurta", tree="Vishudh Printed Kurta", brand="Vishudh"))
    )
    assert product.category is None
    assert product.category_path is None


def test_flat_tree_cut_off_has_no_category_either() -> None:
    product = _only(_stage(_row(name="Eternal Gandhi Weights", tree="Eternal Gandhi Weig...")))
    assert product.category is None


def test_truncated_last_segment_is_dropped() -> None:
    product = _only(
        _stage(
            _row(
                name="FabHomeDecor Fabric Double Sofa Bed",
                tree="Furniture >> Living Room Furniture >> Sofa Beds & Futons >> FabHomeDecor Fabric Double Sofa Bed (Finish Colo...",
            )
        )
    )
    assert product.category == "Furniture"
    assert product.category_path == "Furniture >> Living Room Furniture >> Sofa Beds & Futons"


def test_nbsp_and_double_spaces_are_normalised() -> None:
    product = _only(
        _stage(
            _row(
                name="\u00a0Tarkan  Unique Style-2016   Umbrella",
                tree="Home  Decor >> Umbrellas\u00a0 >> Tarkan Unique Style-2016 Umbrella",
                brand="\u00a0Tarkan",
            )
        )
    )
    assert product.product_name == "Tarkan Unique Style-2016 Umbrella"
    assert product.brand == "Tarkan"
    assert product.category_path == "Home Decor >> Umbrellas"


@pytest.mark.parametrize(
    "noise", ["Regular", "Slim", "Black", "White", "Regular Fit", "Light Pink", "RED", ""]
)
def test_fit_and_colour_words_or_empty_as_brand_become_none(noise: str) -> None:
    assert _only(_stage(_row(brand=noise))).brand is None


@pytest.mark.parametrize("brand", ["Allure Auto", "BlueStone", "Red Tape", "Raymond"])
def test_real_brands_survive(brand: str) -> None:
    assert _only(_stage(_row(brand=brand))).brand == brand


def test_category_tree_must_be_a_json_array() -> None:
    broken = _row().replace('"[""Clothing', '"Clothing').replace('Shorts""]"', 'Shorts"')
    staging = _stage(broken)
    assert staging.products == ()
    assert "JSON array" in staging.rejects[0].reason


def test_wrong_field_count_is_rejected_not_dropped() -> None:
    staging = _stage(_row(), '"x","y"')
    assert len(staging.products) == 1
    assert staging.rejects[0].reason == "expected 10 fields, got 2"
    assert staging.rejects[0].record_number == 2


def test_wrong_header_is_an_actionable_error() -> None:
    with pytest.raises(ShopflowError, match="unexpected Flipkart catalogue columns"):
        parse_catalogue_csv(io.StringIO("a,b\r\n1,2\r\n", newline=""))


def test_full_catalogue() -> None:
    staging = load_catalogue()
    product_ids = [product.product_id for product in staging.products]
    assert len(product_ids) >= 19_900
    assert len(set(product_ids)) == len(product_ids)
    assert len(product_ids) + len(staging.rejects) == 20_000
    assert all("duplicate pid" in reject.reason for reject in staging.rejects)
    assert sum(product.price is None for product in staging.products) == 78
    categories = {product.category for product in staging.products} - {None}
    assert len(categories) == 32
    assert sum(product.category is None for product in staging.products) == 328
    for product in staging.products:
        assert product.product_name == " ".join(product.product_name.split())
        assert product.category_path is None or "..." not in product.category_path.split(" >> ")[-1]
        assert product.brand not in {"Regular", "Slim", "Black", "White", ""}
        if product.price is not None and product.retail_price_inr is not None:
            assert product.price <= product.retail_price_inr
        assert date(2015, 12, 1) <= product.date <= date(2016, 6, 30)
