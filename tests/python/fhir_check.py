"""FHIR R4 as a hospital system reads it from the gateway, for `tests/tests/fhir.rs`.

  fhir_check.py BASE TOKEN OTHER_TOKEN CASE_ID PATIENT_ID CLINIC

BASE is the gateway's /fhir/r4. Every resource answered is validated against FHIR R4
(fhir.resources 6.4.0, FHIR 4.0.1, with the code bindings it leaves unchecked checked here);
the case's ServiceRequest -> Patient, ImagingStudy (and on to its DICOMweb endpoint) and
DiagnosticReport are followed by their references; the searches a hospital polls with are
run; OTHER_TOKEN's user finds none of it. Prints each problem; the exit status counts them.
"""

import base64
import json
import sys
import urllib.parse

import requests
from fhir.resources import __fhir_version__, construct_fhir_element

problems = []


def problem(text):
    problems.append(text)
    print("PROBLEM:", text)


# Required bindings of R4 4.0.1 that fhir.resources does not enforce.
R4_CODES = {
    ("DiagnosticReport", "status"): {"registered", "partial", "preliminary", "final", "amended",
                                     "corrected", "appended", "cancelled", "entered-in-error", "unknown"},
    ("ServiceRequest", "status"): {"draft", "active", "on-hold", "revoked", "completed",
                                   "entered-in-error", "unknown"},
    ("ServiceRequest", "intent"): {"proposal", "plan", "directive", "order", "original-order",
                                   "reflex-order", "filler-order", "instance-order", "option"},
    ("ServiceRequest", "priority"): {"routine", "urgent", "asap", "stat"},
    ("ImagingStudy", "status"): {"registered", "available", "cancelled", "entered-in-error", "unknown"},
    ("Patient", "gender"): {"male", "female", "other", "unknown"},
    ("Bundle", "type"): {"document", "message", "transaction", "transaction-response", "batch",
                         "batch-response", "history", "searchset", "collection"},
    ("CapabilityStatement", "status"): {"draft", "active", "retired", "unknown"},
    ("CapabilityStatement", "kind"): {"instance", "capability", "requirements"},
    ("Endpoint", "status"): {"active", "suspended", "error", "off", "entered-in-error", "test"},
    ("OperationOutcome", "severity"): {"fatal", "error", "warning", "information"},
}


def validate(resource, where):
    assert __fhir_version__ == "4.0.1", __fhir_version__
    try:
        construct_fhir_element(resource["resourceType"], resource)
    except Exception as e:  # pydantic's ValidationError, or an unknown type
        problem(f"{where}: not valid FHIR R4: {str(e)[:500]}")

    def codes(r):
        kind = r.get("resourceType")
        for (rt, field), allowed in R4_CODES.items():
            if kind == rt and field in r and r[field] not in allowed:
                problem(f"{where}: {rt}.{field} = {r[field]!r} is not an R4 code")
        for c in r.get("contained", []):
            codes(c)
        for e in r.get("entry", []):
            if "resource" in e:
                codes(e["resource"])
        for issue in r.get("issue", []):
            if issue.get("severity") not in R4_CODES[("OperationOutcome", "severity")]:
                problem(f"{where}: OperationOutcome severity {issue.get('severity')!r}")

    codes(resource)
    return resource


class Fhir:
    def __init__(self, base, token):
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}

    def get(self, path, expect=200, headers=None):
        url = path if path.startswith("http") else f"{self.base}/{path}"
        r = requests.get(url, headers={**self.headers, **(headers or {})})
        if r.status_code != expect:
            problem(f"GET {path}: {r.status_code}, expected {expect}: {r.text[:300]}")
        if not r.headers.get("Content-Type", "").startswith("application/fhir+json"):
            problem(f"GET {path}: Content-Type {r.headers.get('Content-Type')}")
        return validate(r.json(), f"GET {path}")

    def search(self, kind, **params):
        query = urllib.parse.urlencode(params)
        bundle = self.get(f"{kind}?{query}")
        if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "searchset":
            problem(f"{kind}?{query} is not a searchset Bundle")
        return [e["resource"] for e in bundle.get("entry", [])]

    def follow(self, reference):
        return self.get(reference)


def main(base, token, other_token, case_id, patient_id, clinic):
    fhir = Fhir(base, token)
    cap = fhir.get("metadata")
    if cap.get("fhirVersion") != "4.0.1":
        problem(f"CapabilityStatement says FHIR {cap.get('fhirVersion')}")

    # The chain: ServiceRequest -> Patient, ImagingStudy, DiagnosticReport.
    request = fhir.get(f"ServiceRequest/{case_id}")
    patient = fhir.follow(request["subject"]["reference"])
    ids = [(i["system"], i["value"]) for i in patient.get("identifier", [])]
    if (f"urn:tpg:clinic:{clinic}", patient_id) not in ids:
        problem(f"the Patient's identifiers {ids} do not name {patient_id} at {clinic}")
    consent = [e for e in request.get("extension", []) if "consent" in e["url"]]
    if not consent:
        problem("the ServiceRequest carries no consent")
    if request.get("priority") != "urgent":
        problem(f"an urgent request has priority {request.get('priority')}")
    studies = [s["reference"] for s in request.get("supportingInfo", [])]
    if len(studies) != 1:
        problem(f"the ServiceRequest names {studies}, not its one study")
    study = fhir.follow(studies[0])
    if {"reference": f"ServiceRequest/{case_id}"} not in study.get("basedOn", []):
        problem("the ImagingStudy is not based on its ServiceRequest")
    if study["subject"] != request["subject"]:
        problem("the ImagingStudy's subject is not the request's")
    endpoint = study["contained"][0]
    uid = study["identifier"][0]["value"].removeprefix("urn:oid:")
    found = requests.get(f"{endpoint['address']}/studies", params={"StudyInstanceUID": uid},
                         headers={"Authorization": fhir.headers["Authorization"]}).json()
    if len(found) != 1 or study["numberOfInstances"] != found[0]["00201208"]["Value"][0]:
        problem(f"the study's DICOMweb endpoint answers {found}")
    reports = fhir.search("DiagnosticReport", **{"based-on": f"ServiceRequest/{case_id}"})
    if len(reports) != 1:
        problem(f"{len(reports)} reports are based on the request")
    else:
        report = reports[0]
        if report["status"] != "amended":
            problem(f"a report with an addendum is {report['status']}, not amended")
        text = base64.b64decode(report["presentedForm"][0]["data"]).decode()
        if "Addendum 1" not in text:
            problem("the report's text has no addendum")
        if report.get("imagingStudy") != [{"reference": studies[0]}]:
            problem(f"the report names {report.get('imagingStudy')}")
        if fhir.follow(report["basedOn"][0]["reference"])["id"] != case_id:
            problem("the report's basedOn does not lead back to the request")

    # What a hospital polls with.
    subject = request["subject"]["reference"]
    mine = fhir.search("ServiceRequest", patient=subject)
    if len(mine) != 2:
        problem(f"ServiceRequest?patient= finds {len(mine)}, not the patient's 2 cases")
    if len(fhir.search("ServiceRequest", patient=subject.split("/")[1], status="completed")) != 1:
        problem("one of the patient's requests is completed")
    if len(fhir.search("ServiceRequest", status="active")) != 1:
        problem("one request is open")
    if len(fhir.search("Patient", identifier=f"urn:tpg:clinic:{clinic}|{patient_id}")) != 1:
        problem("the patient is not found by the clinic's identifier")
    if fhir.search("Patient", identifier=f"urn:tpg:clinic:elsewhere|{patient_id}"):
        problem("another clinic's identifier system finds the patient")
    if len(fhir.search("ImagingStudy", patient=subject)) != 1:
        problem("the patient's study is not found by patient")
    if len(fhir.search("DiagnosticReport", patient=subject, status="amended,final")) != 1:
        problem("the amended report is not found by status")
    if len(fhir.search("DiagnosticReport", date="ge2020-01-01")) != 1:
        problem("DiagnosticReport?date=ge2020-01-01 misses the report")
    if fhir.search("DiagnosticReport", date="lt2020-01-01"):
        problem("DiagnosticReport?date=lt2020-01-01 finds a report")
    updated = fhir.search("ServiceRequest", _lastUpdated="ge2020-01-01")
    if len(updated) != 2:
        problem(f"_lastUpdated=ge2020-01-01 finds {len(updated)} requests")
    newest = max(r["meta"]["lastUpdated"] for r in updated)
    if fhir.search("ServiceRequest", _lastUpdated=f"gt{newest}"):
        problem("polling after the newest change still finds requests")
    first_page = fhir.get("ServiceRequest?_count=1")
    nexts = [l["url"] for l in first_page.get("link", []) if l["relation"] == "next"]
    if len(first_page.get("entry", [])) != 1 or first_page.get("total") != 2 or not nexts:
        problem(f"_count=1 gives no page of one with a next link: {first_page.get('link')}")
    else:
        second = fhir.get(nexts[0])
        paged = {e["resource"]["id"] for e in first_page["entry"] + second.get("entry", [])}
        if paged != {r["id"] for r in mine}:
            problem("the two pages do not hold the two requests")
    # An unknown parameter is ignored (FHIR's lenient default), refused when asked strictly.
    if len(fhir.search("ServiceRequest", colour="blue", _sort="-authored")) != 2:
        problem("unknown parameters are not ignored by default")
    bad = fhir.get("ServiceRequest?colour=blue", expect=400, headers={"Prefer": "handling=strict"})
    if bad.get("resourceType") != "OperationOutcome" or "colour" not in json.dumps(bad):
        problem(f"an unknown parameter is not named in an OperationOutcome: {bad}")
    fhir.get("Observation", expect=404)

    # Another specialist, on none of these cases, finds nothing.
    other = Fhir(base, other_token)
    for kind in ("Patient", "ServiceRequest", "ImagingStudy", "DiagnosticReport"):
        if other.search(kind):
            problem(f"another specialist finds {kind} resources")
    other.get(f"ServiceRequest/{case_id}", expect=404)
    print(json.dumps({"problems": len(problems)}))
    return min(len(problems), 100)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:7]))
