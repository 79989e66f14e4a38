# Airflow 3 image with leadflow's production lock and the leadflow package installed. Only
# requirements.txt: the test tools and CRM SDKs of requirements-test.txt stay out of the image.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root requirements.txt /opt/leadflow/requirements.txt
RUN pip install --no-cache-dir -r /opt/leadflow/requirements.txt
# The drivers docker-compose.yaml's URLs name, from the lock rather than whatever the base image
# carries: psycopg 3 (metadata sync and async, Celery results, warehouse), the celery provider and
# its redis client (broker). A missing one fails the build, not the first task.
RUN python -c "import psycopg, redis, sqlalchemy.dialects.postgresql.psycopg, airflow.providers.celery.executors.celery_executor"
COPY --chown=airflow:root pyproject.toml README.md /opt/leadflow/
COPY --chown=airflow:root include /opt/leadflow/include
RUN pip install --no-cache-dir --no-deps -e /opt/leadflow
# airflow-init generates the keys the components share with this (docker-compose.yaml).
COPY --chown=airflow:root scripts/compose_secrets.sh /opt/leadflow/scripts/compose_secrets.sh
# LEADFLOW_VAR_DIR: compose mounts the named volume `leadflow-var` here; a new named volume takes
# the ownership of the image's directory, so the services (user 50000) can write to it.
RUN mkdir -p /opt/airflow/var
