"""Test rig: real SIP/RTP peers on 127.0.0.1 for the gateway's integration tests.

Modules: :mod:`~tests.rig.kamailio` (registrar/proxy), :mod:`~tests.rig.baresip`
(softphone driven over TCP), :mod:`~tests.rig.sipp` (scripted SIP), :mod:`~tests.rig.capture`
(tshark on lo), :mod:`~tests.rig.audio` (WAV synthesis and comparison),
:mod:`~tests.rig.ports` (free ports), :mod:`~tests.rig.proc` (process plumbing).
Fixtures wrapping them are in ``tests/conftest.py``.
"""
