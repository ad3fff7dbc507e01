"""Smart retail: checkout-free face pay for consenting members and customer analytics.

See docs/retail.md. Central types: :class:`StoreConfig` (cameras, products, privacy),
:class:`RetailStore` (visits, carts, face pay, alerts), :class:`MemberRegistry` (consented
enrolment, consent withdrawal, export, erasure), :class:`Catalogue` (``store.products``: the
products on sale), the events :class:`Entry`, :class:`ZoneVisit`, :class:`Pick`, :class:`Exit`,
:func:`compute_report` for analytics, and :func:`run_store` (`faceatlas retail run`): the
store's cameras, through the video layer, drive the store.
"""

from faceatlas.apps.retail.analytics import (
    CHARTS,
    REPORT_DAYS,
    SUPPRESSED,
    ChartCache,
    Report,
    chart_png,
    compute_report,
    csv_text,
    draw_charts,
    list_stores,
    report_window,
    store_report,
    suppress_cells,
    write_csv,
)
from faceatlas.apps.retail.config import MAX_PRICE_CENTS, Camera, Privacy, Product, Recognition, StoreConfig
from faceatlas.apps.retail.db import migrate
from faceatlas.apps.retail.erasure import erase_stores, purge_anonymous_visitors
from faceatlas.apps.retail.events import Entry, Exit, Pick, ZoneVisit, from_video_event
from faceatlas.apps.retail.live import StoreRun, StoreRunReport, camera_config, count_demographics, run_store
from faceatlas.apps.retail.members import (
    BIOMETRIC_PURPOSES,
    PURPOSES,
    ConsentRecord,
    ConsentRequired,
    ErasureReport,
    FaceMismatch,
    MemberInfo,
    MemberRegistry,
    NoUsableFace,
    WithdrawalReport,
)
from faceatlas.apps.retail.observations import AGE_BANDS, Observations, age_band
from faceatlas.apps.retail.payments import LedgerPayments, PaymentBackend
from faceatlas.apps.retail.products import Catalogue, ProductRemoval
from faceatlas.apps.retail.simulator import check_day, check_out_folder, demo_store, simulate_day
from faceatlas.apps.retail.store import (
    REFUND_REASON_MAX_LENGTH,
    AlertResolution,
    Cart,
    ExitOutcome,
    RetailStore,
    UnknownShopper,
)

__all__ = [
    "AGE_BANDS",
    "AlertResolution",
    "BIOMETRIC_PURPOSES",
    "CHARTS",
    "MAX_PRICE_CENTS",
    "Camera",
    "Cart",
    "Catalogue",
    "ConsentRecord",
    "ConsentRequired",
    "Entry",
    "ErasureReport",
    "Exit",
    "ExitOutcome",
    "FaceMismatch",
    "LedgerPayments",
    "MemberInfo",
    "MemberRegistry",
    "NoUsableFace",
    "Observations",
    "PaymentBackend",
    "Pick",
    "Privacy",
    "Product",
    "PURPOSES",
    "REPORT_DAYS",
    "REFUND_REASON_MAX_LENGTH",
    "ProductRemoval",
    "Recognition",
    "Report",
    "RetailStore",
    "SUPPRESSED",
    "StoreConfig",
    "StoreRun",
    "StoreRunReport",
    "UnknownShopper",
    "WithdrawalReport",
    "ZoneVisit",
    "age_band",
    "camera_config",
    "ChartCache",
    "chart_png",
    "check_day",
    "check_out_folder",
    "compute_report",
    "count_demographics",
    "csv_text",
    "demo_store",
    "draw_charts",
    "erase_stores",
    "purge_anonymous_visitors",
    "from_video_event",
    "list_stores",
    "migrate",
    "simulate_day",
    "report_window",
    "run_store",
    "store_report",
    "suppress_cells",
    "write_csv",
]
