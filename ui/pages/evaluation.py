"""The evaluation page: start a `rag eval` run, follow its progress, draw recall (and answer
accuracy) against budget per layout, and look at earlier runs."""

from __future__ import annotations

from typing import Any

import streamlit as st

from ui.client import ApiClient, ApiError
from ui.components import api, show_error
from ui.evaluation import (
    BUDGETS,
    cell_rows,
    chart_rows,
    follow,
    recommendation,
    request,
    run_rows,
    short_tokens,
)

LAYOUTS = ("document", "relevance", "edges")
MODES = ("hybrid", "dense", "keyword")


def start_form(client: ApiClient) -> None:
    with st.form("eval"):
        probes = st.number_input("Probes of each kind (needles, passages)", 1, 200, 10,
                                 key="eval_probes")
        budgets = st.multiselect("Budgets", BUDGETS, default=[4096, 8192, 16384, 32768],
                                 format_func=short_tokens, key="eval_budgets")
        layouts = st.multiselect("Layouts", LAYOUTS, default=list(LAYOUTS), key="eval_layouts")
        modes = st.multiselect("Search modes (none: the configured one)", MODES,
                               key="eval_modes")
        questions = st.checkbox("Questions written by the model (else masked sentences)",
                                value=False, key="eval_questions")
        answers = st.checkbox("Ask the model at each budget (slow on a CPU)", value=False,
                              key="eval_answers")
        submitted = st.form_submit_button("Run the evaluation", icon=":material/play_arrow:",
                                          type="primary")
    if not submitted:
        return
    if not budgets or not layouts:
        st.warning("Choose at least one budget and one layout.")
        return
    with st.status("Evaluating…", expanded=True) as status:
        bar = st.progress(0.0, text="Starting…")
        try:
            job = client.start_eval(request(int(probes), list(budgets), list(layouts),
                                            list(modes), answers, questions))
            job = follow(client, job, lambda text, share: bar.progress(share, text=text),
                         st.session_state["_ui_settings"])
        except ApiError as exc:
            status.update(label="The evaluation could not run", state="error")
            show_error(exc)
            return
        failed = job.get("status") != "done"
        status.update(label="The evaluation failed" if failed else "Evaluation done",
                      state="error" if failed else "complete")
    if failed:
        st.error(f"The evaluation failed: {job.get('error') or 'unknown error'}")
        return
    st.session_state["eval_run"] = job["run"]


def show_run(run: dict[str, Any]) -> None:
    import altair as alt  # here: the page's heading and form show before it loads
    import pandas as pd

    st.subheader(f"Run {run['id']}")
    text = recommendation(run)
    if text:
        st.success(text, icon=":material/recommend:")
    rows = chart_rows(run)
    if rows:
        chart = alt.Chart(pd.DataFrame(rows)).mark_line(point=True).encode(
            x=alt.X("budget:Q", scale=alt.Scale(type="log", base=2), title="budget (tokens)"),
            y=alt.Y("value:Q", scale=alt.Scale(domain=[0, 1]), title="share of probes"),
            color=alt.Color("series:N", title="layout"),
            strokeDash=alt.StrokeDash("metric:N", title=""),
            tooltip=["budget", "series", "metric", "value"])
        st.altair_chart(chart, width="stretch")
    st.dataframe(pd.DataFrame(cell_rows(run)), hide_index=True, width="stretch")
    corpus = run.get("corpus") or {}
    st.caption(f"{len(run.get('probes') or [])} probes · {len(corpus.get('documents') or {})} "
               f"documents (corpus {corpus.get('hash')}) · settings {run.get('settings_hash')} "
               f"· model {run.get('model')} · {run.get('seconds', 0):.0f} s")
    for note in run.get("notes") or []:
        st.caption(note)


def earlier_runs(client: ApiClient) -> None:
    st.subheader("Earlier runs")
    try:
        runs = client.eval_runs()
    except ApiError as exc:
        show_error(exc)
        return
    if not runs:
        st.caption("No evaluation has run on this collection yet.")
        return
    st.dataframe(run_rows(runs), hide_index=True, width="stretch")
    chosen = st.selectbox("Show a run", [r["id"] for r in runs], index=None, key="eval_pick")
    if chosen and chosen != (st.session_state.get("eval_run") or {}).get("id"):
        try:
            st.session_state["eval_run"] = client.eval_job(chosen)["run"]
        except ApiError as exc:
            show_error(exc)


client = api()
st.title("Evaluation")
st.caption("How well your documents are served at each budget and layout: needles (made-up "
           "facts put into copies of your documents, in a temporary collection) and passages "
           "(sentences of your documents) are searched for, and the share found in the context "
           "is drawn against the budget.")
start_form(client)
earlier_runs(client)
if st.session_state.get("eval_run"):
    show_run(st.session_state["eval_run"])
