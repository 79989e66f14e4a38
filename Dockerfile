# Airflow 3 image with leadflow's production lock and the leadflow package installed. Only
# requirements.txt: the test tools and CRM SDKs of requirements-test.txt stay out of the image.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root requirements.txt /opt/leadflow/requirements.txt
RUN pip install --no-cache-dir -r /opt/leadflow/requirements.txt
COPY --chown=airflow:root pyproject.toml README.md /opt/leadflow/
COPY --chown=airflow:root include /opt/leadflow/include
RUN pip install --no-cache-dir --no-deps -e /opt/leadflow
# LEADFLOW_VAR_DIR: compose mounts the named volume `leadflow-var` here; a new named volume takes
# the ownership of the image's directory, so the services (user 50000) can write to it.
RUN mkdir -p /opt/airflow/var
