"""neuron_export studio: workspace, background jobs and the Streamlit dashboard built on them."""
