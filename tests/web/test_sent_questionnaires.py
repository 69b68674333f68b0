"""The patient page shows the questionnaires sent to the patient: sent, answered, missed (issue 18),
in bokmål, nynorsk and English."""

from __future__ import annotations

from typing import Any

from tests.web.conftest import csrf_of
from tests.web.seed import seed_questionnaire_tasks


def test_patient_page_lists_sent_and_missed_questionnaires(signed_in: Any, web_env: Any) -> None:
    seed_questionnaire_tasks(web_env.settings.resolved_database_url)
    web = signed_in("clinician")
    html = web.get(f"/web/patients/{web_env.ids['stable']}").text
    section = html.split('id="sent-questionnaires-heading"', 1)[1].split("</section>", 1)[0]
    assert "Spørreskjema sendt til pasienten" in section
    assert "copd-symptoms" in section
    assert "Sendt" in section and "Ikke besvart i tide" in section
    assert "<caption>" in section and 'scope="col"' in section
    token = csrf_of(web.get("/web/worklist").text)
    for lang, sent, missed in (("nn", "Sendt", "Ikkje svara i tide"), ("en", "Sent", "Missed")):
        web.post(
            "/web/language",
            data={"csrf_token": token, "lang": lang, "next": "/web/worklist"},
            follow_redirects=False,
        )
        page = web.get(f"/web/patients/{web_env.ids['stable']}").text
        part = page.split('id="sent-questionnaires-heading"', 1)[1].split("</section>", 1)[0]
        assert missed in part and sent in part, lang
