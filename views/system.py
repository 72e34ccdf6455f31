"""System page: live CPU, memory and disk of the host, the running jobs' processes, and the NeuronCores."""

from typing import Optional

import streamlit as st

from neuron_export import doctor, neuron_host
from neuron_export.errors import NeuronExportError
from studio import charts, system, ui
from studio.jobs import JobStatus, farm, timeline

GB = 1e9


@st.cache_data(ttl=30, show_spinner=False)
def neuron_devices(tool: str) -> tuple[list[system.NeuronDevice], Optional[str]]:
    """The host's Neuron devices (refreshed every 30 s), or the reason neuron-ls gave none."""
    try:
        return system.read_neuron_ls(tool), None
    except NeuronExportError as error:
        return [], str(error)


@st.cache_resource(show_spinner=False)
def neuron_monitor(tool: str) -> system.NeuronMonitor:
    """One background neuron-monitor per server, shared by every session's panel."""
    return system.NeuronMonitor(tool)


def usage_bar(label: str, usage: system.Usage) -> None:
    st.markdown(f"**{label}**")
    st.progress(min(usage.percent / 100, 1.0),
                text=f"{usage.used / GB:,.1f} GB of {usage.total / GB:,.1f} GB used ({usage.percent:.0f}%)")


def host_section(services: ui.Services) -> None:
    running = services.store.list(limit=None, statuses=[JobStatus.RUNNING])
    queued = services.store.list(limit=None, statuses=[JobStatus.QUEUED])
    snapshot = system.host_snapshot(services.workspace.root, [job.pid for job in running if job.pid])
    cpu, memory = st.columns([3, 2])
    with cpu:
        average = sum(snapshot.cpu_percent) / len(snapshot.cpu_percent)
        st.plotly_chart(
            charts.percent_bars_figure([f"core {i}" for i in range(len(snapshot.cpu_percent))], snapshot.cpu_percent,
                                       f"CPU per core · {average:.0f}% on average over {len(snapshot.cpu_percent)} cores"),
            width="stretch", key="cpu-per-core",
        )
    with memory:
        usage_bar("Memory", snapshot.memory)
        usage_bar("Disk of the workspace", snapshot.disk)
        st.caption(f"Workspace: `{snapshot.disk_path}`")

    st.subheader("Running jobs")
    if not running:
        st.caption("No job is running" + (f"; {len(queued)} queued." if queued else "."))
        return
    rows = []
    for job in running:
        group = snapshot.groups.get(job.pid) if job.pid else None
        rows.append({
            "Job": job.title,
            "Doing": timeline.stage_words(job),
            "Progress": job.progress,
            "Elapsed": ui.fmt_duration(job.elapsed_s),
            "PID": job.pid,
            "Processes": group.processes if group else 0,
            "CPU %": group.cpu_percent if group else 0.0,
            "Memory (RSS)": ui.fmt_mb(group.rss) if group else "—",
        })
    st.dataframe(rows, hide_index=True, width="stretch", column_config={
        "Progress": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="percent"),
        "CPU %": st.column_config.NumberColumn(format="%.0f %%", help="100 % = one core busy; all processes of the job"),
        "PID": st.column_config.NumberColumn(format="%d"),
    })
    if queued:
        st.caption(f"{len(queued)} more job(s) queued: they start when a running one finishes.")


def neuron_section() -> None:
    st.subheader("Neuron devices")
    neuron_ls, monitor_tool = system.find_neuron_tool("neuron-ls"), system.find_neuron_tool("neuron-monitor")
    if neuron_ls is None:
        st.info(
            "No Neuron device or tools on this host: neuron-ls and neuron-monitor were found neither on PATH nor in "
            f"`{neuron_host.NEURON_TOOLS_DIR}`. Artifacts built with the portable backends (inductor, torchscript) run "
            "here on the CPU or a GPU; Neuron artifacts need an Inferentia / Trainium instance (inf2, trn1) with the "
            "Neuron SDK installed.",
            icon=":material/info:",
        )
        return
    devices, problem = neuron_devices(neuron_ls)
    if problem:
        st.warning(f"The Neuron tools are installed but list no device: {problem}", icon=":material/warning:")
        return
    cores = sum(len(device.cores) for device in devices)
    st.caption(f"{len(devices)} Neuron device(s), {cores} NeuronCores, "
               f"{sum(d.memory for d in devices) / GB:,.0f} GB device memory")
    activity: dict = {}
    if monitor_tool is None:
        st.caption("neuron-monitor is not installed: utilization and memory per core are not available.")
    else:
        monitor = neuron_monitor(monitor_tool)
        report = monitor.latest()
        if report is None:
            st.caption("Waiting for neuron-monitor's first report…" if monitor.running else "neuron-monitor stopped.")
        else:
            activity = system.parse_neuron_monitor(report)
    rows = system.core_rows(devices, activity)
    st.plotly_chart(charts.percent_bars_figure([f"NC {r['NeuronCore']}" for r in rows], [r["Utilization %"] for r in rows],
                                               "NeuronCore utilization"), width="stretch", key="neuroncores")
    st.dataframe(rows, hide_index=True, width="stretch", column_config={
        "Utilization %": st.column_config.ProgressColumn(min_value=0.0, max_value=100.0, format="%.0f %%"),
        "Memory used MB": st.column_config.NumberColumn(format="%.1f"),
        "Memory MB": st.column_config.NumberColumn(format="%.0f", help="this core's share of its device's memory"),
    })
    users = [(pid, command) for device in devices for pid, command in device.processes]
    if users:
        st.caption("Processes on the devices: " + "; ".join(f"{pid} `{command[:60]}`" for pid, command in users))


@st.fragment(run_every="2s")
def live_panel(services: ui.Services) -> None:
    host_section(services)
    neuron_section()


@st.cache_data(ttl=60, show_spinner="Checking what this host can compile and run…")
def doctor_report() -> dict:
    return doctor.gather().to_dict()


def doctor_section() -> None:
    """`neuron-export doctor` as tables: each fact with its fix, and per backend whether it compiles and runs here."""
    st.subheader("What this host can compile and run")
    report = doctor_report()
    st.dataframe([{"": "✓" if f["ok"] else "✗", "Fact": f["name"], "Found": f["value"], "Fix": "" if f["ok"] else f["fix"] or ""}
                  for f in report["facts"]], hide_index=True, width="stretch", key="doctor-facts")
    st.dataframe([{"Backend": b["name"], "Compiles here": "yes" if b["can_compile"] else f"no: {b['compile_problem']}",
                   "Runs here": "yes" if b["can_run"] else f"no: {b['run_problem']}", "Note": b["note"]}
                  for b in report["backends"]], hide_index=True, width="stretch", key="doctor-backends")
    usable = [b["name"] for b in report["backends"] if b["can_compile"] and b["can_run"]]
    if usable:
        st.success(f"This host can compile and run with: {', '.join(usable)}.", icon=":material/check_circle:")
    else:
        st.error("No backend can both compile and run here: see the fixes above.", icon=":material/error:")
    st.caption("The same as `neuron-export doctor` (`--json` for scripts); checked again every minute.")


def placement_section(services: ui.Services) -> None:
    rows = system.neuron_placements(ui.artifact_manifests(services.workspace))
    if rows:
        st.subheader("NeuronCores of the workspace's Neuron artifacts")
        st.dataframe(rows, hide_index=True, width="stretch", key="neuron-placements")
        st.caption("Where each component is placed when it loads: the Stable Diffusion UNet gets a copy on two NeuronCores, "
                   "so classifier-free guidance runs its unconditional and text halves side by side (AWS's SD samples).")


def farm_section(services: ui.Services) -> None:
    """Where export jobs run: here (default) or on a Ray cluster (the farm); saving it applies to jobs that start later."""
    st.subheader("Compile farm (Ray)")
    store = services.store
    st.caption(farm.where_jobs_run(store) + " Jobs already running stay where they are.")
    with st.form("farm"):
        typed = st.text_input("Ray cluster address", value=farm.farm_address(store) or "",
                              placeholder="HEAD:6379, or the Ray dashboard's http://HEAD:8265",
                              help="The workspace (outputs, model folders, compile cache) must be at the same path on the "
                                   "cluster's head node: the same host, or shared storage.")
        save, test, local = (column.form_submit_button(label) for column, label in
                             zip(st.columns(3), ("Save", "Test connection", "Run jobs here")))
    try:
        if save:
            store.set_setting(farm.ADDRESS_SETTING, farm.check_address(typed))
            st.success(farm.where_jobs_run(store), icon=":material/hub:")
        elif test:
            with st.spinner("Asking the Ray cluster for its nodes…"):
                st.success(farm.describe(farm.check_address(typed)), icon=":material/hub:")
        elif local:
            store.set_setting(farm.ADDRESS_SETTING, farm.LOCAL)
            st.success(farm.where_jobs_run(store), icon=":material/computer:")
    except NeuronExportError as error:
        st.error(str(error), icon=":material/error:")


def main() -> None:
    st.title("System")
    st.caption("Live view of this host, refreshed every 2 seconds: CPU, memory, disk, running compiles and NeuronCores.")
    services = ui.services()
    live_panel(services)
    farm_section(services)
    placement_section(services)
    doctor_section()


main()
