# Feast feature server over adprior's feature definitions, Redis online store.
# Built by infra/docker-compose.yml (context: the repository root):
#   docker compose -f infra/docker-compose.yml build feature-server
# The registry and the offline parquet files are not baked in: compose mounts feature_repo/data
# read-only (written by `adprior materialize --online redis` on the host).
FROM python:3.11-slim

RUN pip install --no-cache-dir "feast[redis]==0.67.0"
# The on-demand views import world.schema (category paths) and adprior_feature_repo.udf_inputs inside their
# functions: install the adprior distribution itself, without its dependencies (feast brings pyarrow and
# pandas, all those two modules need).
COPY pyproject.toml setup.py README.md /src/
COPY adprior /src/adprior
COPY world /src/world
COPY llm_predictor /src/llm_predictor
COPY ranking /src/ranking
COPY retrieval /src/retrieval
COPY feature_repo /src/feature_repo
RUN pip install --no-cache-dir --no-deps /src && rm -rf /src

# An unprivileged user; the repo definitions are read-only to it.
RUN useradd --create-home --uid 10001 feast
WORKDIR /app/feature_repo
COPY feature_repo/*.py feature_repo/feature_store.redis.yaml feature_repo/.feastignore ./

USER feast
EXPOSE 6566
# ADPRIOR_REDIS (host:port,password=...) comes from the environment at run time, never from the image.
# 0.0.0.0 inside the container only; compose publishes the port on 127.0.0.1.
CMD ["feast", "-f", "feature_store.redis.yaml", "serve", "-h", "0.0.0.0", "-p", "6566", "--no-access-log"]
