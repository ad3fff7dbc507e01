"""Retail analytics for the console: a store's report as JSON, CSV or a PNG chart, shown only to
the tenant that owns the store."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from faceatlas.apps.retail import CHARTS, chart_png, csv_text, report_window, store_report
from faceatlas.service.deps import DbDep, Meter, metered
from faceatlas.service.schemas import RetailReportOut

router = APIRouter(tags=["retail"])
Chart = Literal[CHARTS]  # type: ignore[valid-type]


@router.get(
    "/retail/stores/{store_id}/analytics",
    response_model=RetailReportOut,
    responses={200: {"content": {"text/csv": {}, "image/png": {}}}},
)
async def store_analytics(
    store_id: str,
    db: DbDep,
    meter: Annotated[Meter, Depends(metered("retail.analytics", "read", billable=False))],
    start: Annotated[date | None, Query(alias="from", description="first day (default: 30 days ago)")] = None,
    end: Annotated[date | None, Query(alias="to", description="last day, inclusive (default: today)")] = None,
    format: Annotated[Literal["json", "csv", "png"], Query()] = "json",
    chart: Annotated[Chart, Query(description="the chart drawn when format=png")] = "visits_per_hour",
) -> dict | Response:
    """Visitors, returning visitors, conversion, dwell, zone heat, basket size and demographics."""
    first, last = report_window(start, end)
    report = await run_in_threadpool(store_report, db, meter.principal.tenant_id, store_id, first, last)
    if format == "csv":
        return PlainTextResponse(csv_text(report), media_type="text/csv")
    if format == "png":
        return Response(await run_in_threadpool(chart_png, report, chart), media_type="image/png")
    return {
        "store": store_id,
        "from": first.isoformat(),
        "to": last.isoformat(),
        "summary": report.summary(),
        "sections": [{"metric": m, "key": k, "value": v} for m, k, v in report.rows() if m != "summary"],
    }
