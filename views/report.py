"""Validation report page: how close each compiled output is to eager PyTorch's, per component."""

from pathlib import Path

import streamlit as st

from neuron_export import read_manifest
from neuron_export.errors import NeuronExportError
from studio import charts, ui

DIFF_FORMAT = "%.2e"
ATOL_HELP = ("The largest difference allowed between a number the compiled model gives and the one the original "
             "(eager PyTorch) model gives for the same input. Smaller is stricter.")
DIFF_HELP = ("How far the compiled model's numbers are from the original's on the same inputs: {} over every number "
             "of this output in every run. 0 means identical; it should be below atol.")
SAME_ANSWERS = "gives the same answers as the original"


def plain_verdict(report: dict) -> str:
    """One component's report in one plain sentence: can it be used as it is, and if not, why not."""
    atol, outputs = report["atol"], report["outputs"]
    diffs = [output["max_abs_diff"] for output in outputs if output["max_abs_diff"] is not None]
    if report["passed"]:
        largest = max(diffs, default=0.0)
        seen = "identical on every input tried" if largest == 0 else f"the largest difference seen is {largest:.2g}"
        return f"The compiled model {SAME_ANSWERS}, to within {atol:g} ({seen}): safe to use."
    reasons = []
    if not report["names_match"]:
        reasons.append("it does not return the outputs the original returns")
    misshapen = [output["name"] for output in outputs if not output["shape_match"]]
    if misshapen:
        reasons.append(f"{', '.join(misshapen)} {'has' if len(misshapen) == 1 else 'have'} another shape than the original's")
    far = [output for output in outputs if output["shape_match"] and output.get("values_close") is False]
    if far:
        worst = max(output["max_abs_diff"] for output in far)
        reasons.append(f"{', '.join(output['name'] for output in far)} differ{'s' if len(far) == 1 else ''} from the "
                       f"original's by up to {worst:.2g}, more than the {atol:g} allowed")
    why = "; ".join(reasons) or "it failed the checks below"
    return (f"The compiled model does not give the same answers as the original: {why}. Do not rely on it as it is; "
            "the numbers below show where it differs.")


def pipeline_verdict(passed: dict[str, bool], check=None) -> str:
    """A pipeline's verdict from its components' (the manifest's validation.components) and, when it ran,
    the end-to-end image check: components within atol can still compound into another image."""
    failed = [name for name, ok in passed.items() if not ok]
    if not failed and check is not None and not check.passed:
        from neuron_export.diffusion.image_check import divergence

        return (f"Every compiled component passes its own check, but the whole pipeline's image is not the original's "
                f"({divergence(check)}): do not rely on the pipeline as it is; the end-to-end image check below shows where.")
    if not failed:
        whole = " and the whole pipeline draws the original's image" if check is not None else ""
        return f"Every compiled component ({', '.join(passed)}) {SAME_ANSWERS}, to within its atol{whole}: safe to use."
    return (f"{', '.join(failed)} of the compiled pipeline {'does' if len(failed) == 1 else 'do'} not give the same "
            "answers as the original: do not rely on the pipeline as it is; its tab below says why.")


def show_verdict(text: str, passed: bool) -> None:
    if passed:
        st.success(text, icon=":material/verified:")
    else:
        st.error(text, icon=":material/error:")


def summary(report: dict) -> None:
    verdict, atol, names = st.columns([1, 1, 2])
    with verdict:
        st.markdown("**Verdict**")
        st.badge("passed ✓" if report["passed"] else "failed ✗", color="green" if report["passed"] else "red")
    atol.metric("atol", f"{report['atol']:g}", help=ATOL_HELP)
    atol.caption(f"Source: {report['atol_source']}")
    with names:
        st.markdown("**Output names**")
        if report["names_match"]:
            st.markdown(f"✓ match the reference: {', '.join(f'`{n}`' for n in report['compiled_output_names'])}")
        else:
            st.markdown(f"✗ compiled {', '.join(f'`{n}`' for n in report['compiled_output_names']) or 'none'} · "
                        f"reference {', '.join(f'`{n}`' for n in report['reference_output_names'])}")
    runs = charts.run_rows(report)
    st.markdown(f"**Validation runs** · {len(runs)} run(s) on fresh inputs (input shapes)")
    st.dataframe(runs, hide_index=True)
    for note in report.get("notes", []):
        st.caption(note)


def component_section(folder: Path) -> None:
    """One model's report: summary, the per-output table and the two charts."""
    try:
        manifest = read_manifest(folder)
    except NeuronExportError as error:
        ui.show_error(error)
        return
    if manifest.validation.passed is None:
        st.info(f"Validation was skipped ({manifest.validation.skipped or 'reason not recorded'}): "
                "there is nothing to report. Export again without --disable-validation to get a report.",
                icon=":material/info:")
        return
    report = ui.validation_of(folder)
    if report is None:
        st.warning(f"{folder.name}: validation.json is missing or unreadable.", icon=":material/warning:")
        return
    show_verdict(plain_verdict(report), report["passed"])
    summary(report)
    st.markdown("**Outputs**")
    st.dataframe(
        charts.output_rows(report),
        hide_index=True,
        width="stretch",
        column_config={
            "Max abs diff": st.column_config.NumberColumn(format=DIFF_FORMAT, help=DIFF_HELP.format("the largest")),
            "Mean abs diff": st.column_config.NumberColumn(format=DIFF_FORMAT, help=DIFF_HELP.format("the average")),
            "atol": st.column_config.NumberColumn(format="%g", help=ATOL_HELP),
            "Within atol": st.column_config.TextColumn(help="✓: every difference of this output is below atol"),
        },
    )
    if not report["outputs"]:
        return
    left, right = st.columns(2)
    left.plotly_chart(charts.max_diff_figure(report), width="stretch", key=f"max-diff-{folder}")
    right.plotly_chart(charts.error_distribution_figure(report), width="stretch", key=f"errors-{folder}")


def image_check_section(path: Path, manifest) -> None:
    """A pipeline's end-to-end image check: verdict and figures, both images, the difference, the drift per step."""
    from neuron_export.diffusion.image_check import divergence, load_images

    check, passed = manifest.validation.image_check, manifest.validation.passed
    if manifest.library != "diffusers" or (check is None and passed is None):  # not a diffusion pipeline, or not validated
        return
    st.subheader("End-to-end image check")
    if check is None:
        st.info("Not run: a component failed its own check (see its tab)." if passed is False else
                "Not recorded: this pipeline was compiled before the end-to-end image check existed; export it again to get one.",
                icon=":material/info:")
        return
    st.caption(f"The whole compiled pipeline and the eager diffusers pipeline: \"{check.prompt}\", seed {check.seed}, "
               f"{check.scheduler}, {check.steps} steps, guidance {check.guidance_scale:g}, {check.width}x{check.height}; "
               f"{check.precision} thresholds.")
    verdict, psnr, largest, mean = st.columns(4)
    with verdict:
        st.markdown("**End-to-end**")
        st.badge("passed ✓" if check.passed else "failed ✗", color="green" if check.passed else "red")
    psnr.metric("PSNR", f"{check.psnr:.1f} dB", help=f"at least {check.min_psnr:g} dB")
    largest.metric("Largest pixel difference", f"{check.max_pixel_diff:.2g}", help=f"at most {check.max_pixel_diff_limit:.2g} (pixels 0..1)")
    mean.metric("Mean pixel difference", f"{check.mean_pixel_diff:.2g}")
    if not check.passed:
        st.error(f"Every component passed its own check, but the pipeline's image did not: {divergence(check)}.",
                 icon=":material/error:")
    images = load_images(path, check)
    if images is None:
        st.warning("The check's images (image_check/) are missing or unreadable.", icon=":material/warning:")
    else:
        compiled, eager, difference = st.columns(3)
        compiled.image(images["compiled"], caption="compiled pipeline", width="stretch")
        eager.image(images["eager"], caption="eager diffusers", width="stretch")
        difference.plotly_chart(charts.image_difference_figure(images["difference"], check.max_pixel_diff_limit),
                                width="stretch", key="image-difference")
    if check.latent_drift:
        st.plotly_chart(charts.latent_drift_figure(check.latent_drift, check.max_latent_drift, check.diverged_step),
                        width="stretch", key="latent-drift")


def main() -> None:
    st.title("Validation report")
    st.caption("Does the compiled model give the same answers as the original? Each compiled output against eager "
               "PyTorch on fresh inputs: shapes, largest and mean differences, and atol (hover a column for what it means).")
    services = ui.services()
    picked = ui.artifact_header(services.workspace, key="report_artifact")
    if picked is None:
        return
    path, manifest = picked
    st.caption(f"{manifest.source} · {manifest.task} · compiled {manifest.created[:16].replace('T', ' ')}")
    st.page_link("views/playground.py", label="Try it in the Playground", icon=":material/science:",
                 query_params={"artifact": path.name})
    if not manifest.is_pipeline:
        component_section(path)
        return
    passed = manifest.validation.components
    if manifest.validation.passed is not None and passed:
        show_verdict(pipeline_verdict(passed, manifest.validation.image_check), manifest.validation.passed)
    image_check_section(path, manifest)
    tabs = st.tabs([f"{name} {charts.mark(passed[name]) if name in passed else ''}".strip() for name in manifest.components])
    for tab, name in zip(tabs, manifest.components):
        with tab:
            component_section(path / name)


main()
