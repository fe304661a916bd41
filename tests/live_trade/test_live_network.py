"""One tiny order on a real Alpaca paper account (skipped offline: GPT_TRADER_NETWORK_TESTS=1 and paper keys)."""
from __future__ import annotations

import os
import time

import pytest

pytestmark = pytest.mark.network


@pytest.mark.skipif(os.environ.get("GPT_TRADER_NETWORK_TESTS") != "1" or not os.environ.get("APCA_API_KEY_ID_PAPER"),
                    reason="network test: set GPT_TRADER_NETWORK_TESTS=1 and APCA_API_KEY_ID_PAPER/APCA_API_SECRET_KEY_PAPER")
def test_place_and_cancel_one_tiny_limit_order_on_the_paper_account():
    from slices.live_trade.broker import Alpaca, Keys

    alpaca = Alpaca(Keys(os.environ["APCA_API_KEY_ID_PAPER"], os.environ["APCA_API_SECRET_KEY_PAPER"]), paper=True)
    cid = f"gpt-trader-network-test-{int(time.time())}"
    order = {"id": cid, "symbol": "SPY", "side": "buy", "type": "limit", "qty": 1, "limit_price": 1.00,
             "time_in_force": "day"}
    bo, sent = alpaca.submit(order)  # far below the market: never fills
    try:
        assert sent and bo.client_order_id == cid
        again, sent_again = alpaca.submit(order)  # idempotent: found by client order id
        assert not sent_again and str(again.id) == str(bo.id)
    finally:
        alpaca.cancel(str(bo.id))
    assert alpaca.find(cid).status.value in ("canceled", "pending_cancel")
