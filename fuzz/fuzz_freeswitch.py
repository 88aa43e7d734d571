"""atheris harness: the ``freeswitch`` reader with the example template and with a
custom one of epochs, milliseconds and Q.850 codes (``make fuzz``)."""

import atheris

with atheris.instrument_imports():
    from _harness import check_reader, fuzz

    from telemetry.readers import ReaderOptions

CUSTOM = ReaderOptions(extra={"freeswitch": {
    "template": "uuid,caller_id_number,destination_number,direction,start_uepoch,answer_epoch,"
    "end_stamp,billmsec,hangup_cause,hangup_cause_q850,sip_term_status,sip_gateway_name,"
    "progressmsec,progress_mediamsec,answermsec,rtp_audio_in_mos,accountcode",
    "timezone": "America/New_York",
}})


def test_one(data: bytes) -> None:
    check_reader("freeswitch", data)
    check_reader("freeswitch", data, CUSTOM)


if __name__ == "__main__":
    fuzz(test_one)
