"""Validation report page: how close each compiled output is to eager PyTorch's, per component."""

from pathlib import Path

import streamlit as st

from neuron_export import read_manifest
from neuron_export.errors import NeuronExportError
from studio import charts, ui

DIFF_FORMAT = "%.2e"


def summary(report: dict) -> None:
    verdict, atol, names = st.columns([1, 1, 2])
    with verdict:
        st.markdown("**Verdict**")
        st.badge("passed ✓" if report["passed"] else "failed ✗", color="green" if report["passed"] else "red")
    atol.metric("atol", f"{report['atol']:g}", help="Largest absolute difference allowed between compiled and eager outputs")
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
    summary(report)
    st.markdown("**Outputs**")
    diff_column = {"format": DIFF_FORMAT, "help": "absolute difference, compiled vs eager PyTorch, over all runs"}
    st.dataframe(
        charts.output_rows(report),
        hide_index=True,
        width="stretch",
        column_config={
            "Max abs diff": st.column_config.NumberColumn(**diff_column),
            "Mean abs diff": st.column_config.NumberColumn(**diff_column),
            "atol": st.column_config.NumberColumn(format="%g"),
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
    st.caption("Each compiled output against eager PyTorch on fresh inputs: shapes, largest and mean differences, and atol.")
    services = ui.services()
    picked = ui.artifact_header(services.workspace, key="report_artifact")
    if picked is None:
        return
    path, manifest = picked
    st.caption(f"{manifest.source} · {manifest.task} · compiled {manifest.created[:16].replace('T', ' ')}")
    if not manifest.is_pipeline:
        component_section(path)
        return
    image_check_section(path, manifest)
    passed = manifest.validation.components
    tabs = st.tabs([f"{name} {charts.mark(passed[name]) if name in passed else ''}".strip() for name in manifest.components])
    for tab, name in zip(tabs, manifest.components):
        with tab:
            component_section(path / name)


main()
