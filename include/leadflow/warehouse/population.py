"""The lead population a run works on: live leads, minus those sales owns."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Engine

from leadflow.schema import SALES_OWNED_STAGES
from leadflow.warehouse import repo


def partition_leads(leads: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Live leads leadflow may work on, and the number of live ones it leaves alone
    (sales-owned stages: opportunity, customer, ...). A record that replaced a converted lead
    (`converted_from`, a followed Salesforce Contact) is worked on in its sales-owned stage: it is
    scored, and the engine and the diff leave its stage and status alone."""
    live = leads[~leads["is_deleted"].fillna(False).astype(bool)]
    followed = live["converted_from"].notna() if "converted_from" in live else False
    owned = live["lifecycle_stage"].isin(SALES_OWNED_STAGES) & ~followed
    return live.loc[~owned].reset_index(drop=True), int(owned.sum())


def open_leads(engine: Engine, crm: str, shard: int | None = None, shards: int = 1) -> tuple[pd.DataFrame, int]:
    """`partition_leads` of the warehouse's leads (of one shard)."""
    return partition_leads(repo.load_leads(engine, crm, shard=shard, shards=shards))
