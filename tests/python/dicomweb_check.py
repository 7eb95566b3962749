"""DICOMweb as the Python `dicomweb-client` sees it, for `tests/tests/dicomweb.rs`.

  stow URL TOKEN FILE...       STOW-RS of the files; prints the stored and failed counts
  check GATEWAY TOKEN ORTHANC OTHER_TOKEN FILE...
                               QIDO, WADO metadata, instances and frames from the gateway,
                               compared with the files and with Orthanc's DICOMweb plugin
                               holding the same instances; OTHER_TOKEN's user must see none

Every mismatch is printed; the exit status is the number of them (0: all agree).
"""

import base64
import json
import sys
import urllib.parse

import numpy
import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.encaps import generate_frames

EXPLICIT_LE = "1.2.840.10008.1.2.1"
problems = []


def problem(text):
    problems.append(text)
    print("MISMATCH:", text)


def client(url, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return DICOMwebClient(url=url, headers=headers)


def stow(url, token, files):
    datasets = [pydicom.dcmread(f) for f in files]
    answer = client(url, token).store_instances(datasets)
    stored = len(answer.get("ReferencedSOPSequence", []))
    failed = len(answer.get("FailedSOPSequence", []))
    for item in answer.get("FailedSOPSequence", []):
        print("failed:", item.get("ReferencedSOPInstanceUID"), item.get("FailureReason"))
    print(json.dumps({"stored": stored, "failed": failed}))
    return 0 if failed == 0 and stored == len(files) else 1


def orthanc_search(base, path, params):
    """Orthanc 1.10's plugin does not decode %-escapes in query values: send them as typed."""
    query = "&".join(f"{k}={v}" for k, v in params.items())
    r = requests.get(f"{base}{path}?{query}", headers={"Accept": "application/dicom+json"})
    r.raise_for_status()
    return r.json()


def uids(answers, tag):
    return sorted(a[tag]["Value"][0] for a in answers if "Value" in a.get(tag, {}))


# Tags whose values differ by design: where each server is (RetrieveURL), and the character
# set (the gateway answers in UTF-8 and says so).
DIFFERENT_BY_DESIGN = {"00081190", "00080005"}


def binary(element, headers, server):
    """A binary value's bytes, inline or fetched from its bulk data URI at `server` (whose
    address replaces the URI's: dicomweb-client sends a Host header without the port, and
    both servers build their URIs from it)."""
    if "InlineBinary" in element:
        return base64.b64decode(element["InlineBinary"])
    uri = urllib.parse.urlsplit(element["BulkDataURI"])
    url = uri._replace(netloc=urllib.parse.urlsplit(server).netloc).geturl()
    r = requests.get(url, headers={
        **(headers or {}), "Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'})
    r.raise_for_status()
    boundary = r.headers["Content-Type"].split("boundary=")[1].split(";")[0].strip('"')
    part = r.content.split(b"--" + boundary.encode())[1]
    return part.split(b"\r\n\r\n", 1)[1][:-2]


# Text VRs hold one value, backslashes included (PS3.5 §6.4): Orthanc 1.10 splits them anyway.
ONE_VALUE_VRS = {"LT", "ST", "UT", "UR"}


def values(element):
    if "BulkDataURI" in element or "InlineBinary" in element:
        return "binary"
    vals = element.get("Value")
    if vals is None:
        return None
    if element.get("vr") == "SQ":
        return f"{len(vals)} items"
    if element.get("vr") in ONE_VALUE_VRS:
        vals = ["\\".join("" if v is None else str(v) for v in vals)]
    out = []
    for v in vals:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, str):
            # Padding is not part of a value (PS3.5 §6.2); Orthanc keeps it inside lists.
            v = v.strip(" ")
            try:
                v = float(v)
                v = int(v) if v.is_integer() else v
            except ValueError:
                pass
        out.append(v)
    return sorted(out, key=str) if element.get("vr") == "CS" else out


def compare_entries(what, ours, theirs, key_tag, headers=None, servers=("", "")):
    ours_by = {e[key_tag]["Value"][0]: e for e in ours if "Value" in e.get(key_tag, {})}
    for entry in theirs:
        uid = entry[key_tag]["Value"][0]
        mine = ours_by.get(uid)
        if mine is None:
            problem(f"{what}: Orthanc lists {uid}, the gateway does not")
            continue
        for tag, element in entry.items():
            if tag not in mine:
                problem(f"{what} {uid}: Orthanc answers {tag}, the gateway does not")
            elif tag not in DIFFERENT_BY_DESIGN and values(element) != values(mine[tag]):
                a, b = repr(values(element)), repr(values(mine[tag]))
                at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
                problem(f"{what} {uid} {tag}: Orthanc {a[max(0, at - 60):at + 60]} gateway {b[max(0, at - 60):at + 60]}")
            elif values(element) == "binary" and tag != "7FE00010":
                # Orthanc sends every binary value as bulk data, the gateway short ones inline:
                # the bytes must agree either way.
                if binary(element, None, servers[1]) != binary(mine[tag], headers, servers[0]):
                    problem(f"{what} {uid} {tag}: the binary values differ")


def check(gateway, token, orthanc, other_token, files):
    gw = client(gateway, token)
    local = [pydicom.dcmread(f) for f in files]
    studies = sorted({ds.StudyInstanceUID for ds in local})

    # QIDO: the same searches match the same studies, with the same attributes.
    first = local[0]
    searches = [
        {},
        {"PatientName": str(first.PatientName)[:5] + "*"},
        {"PatientName": str(first.PatientName).lower()[:6] + "*"},
        {"PatientID": first.PatientID},
        {"StudyDate": "20000101-20101231"},
        {"StudyDate": "-20041231"},
        {"ModalitiesInStudy": "CT"},
        {"ModalitiesInStudy": "MR"},
        {"AccessionNumber": first.get("AccessionNumber", "") or "*"},
        {"StudyInstanceUID": studies[0]},
        {"includefield": "00081030"},
    ]
    dated = {ds.StudyInstanceUID for ds in local if ds.get("StudyDate")}
    for params in searches:
        theirs = orthanc_search(orthanc, "/studies", params)
        if params.get("StudyDate", "").startswith("-"):
            # Orthanc compares dates as strings, so an open-ended range matches studies without
            # a date; a range matches only dates within it (PS3.4 §C.2.2.2.5).
            theirs = [t for t in theirs if t["0020000D"]["Value"][0] in dated]
        ours = gw.search_for_studies(search_filters={k: v for k, v in params.items() if k != "includefield"},
                                     fields=[params["includefield"]] if "includefield" in params else None)
        t_uids, o_uids = uids(theirs, "0020000D"), uids(ours, "0020000D")
        if t_uids != o_uids:
            problem(f"search {params}: Orthanc matched {t_uids}, the gateway {o_uids}")
        compare_entries(f"study search {params}", ours, theirs, "0020000D")
    # Beyond what Orthanc 1.10 does: fuzzy matching of name parts, and includefield=all.
    family, _, given = str(first.PatientName).partition("^")
    if given:
        fuzzy = gw.search_for_studies(search_filters={"PatientName": given[:2].lower()}, fuzzymatching=True)
        if first.StudyInstanceUID not in uids(fuzzy, "0020000D"):
            problem(f"fuzzy matching of a given name's start misses {first.StudyInstanceUID}")
        if gw.search_for_studies(search_filters={"PatientName": given[:2].lower()}):
            problem("without fuzzy matching, the start of a given name matches")
    everything = gw.search_for_studies(search_filters={"StudyInstanceUID": first.StudyInstanceUID},
                                       fields=["all"])
    if len(everything) != 1 or "00180050" not in everything[0] and "00280010" not in everything[0]:
        problem("includefield=all does not add the instance's own attributes")
    r = requests.get(f"{gateway}/studies", headers={"Authorization": f"Bearer {token}",
                                                    "Accept": "application/dicom+json",
                                                    "Accept-Encoding": "gzip"})
    if r.headers.get("Content-Encoding") != "gzip" or len(r.json()) != len(studies):
        problem(f"a search asked with Accept-Encoding: gzip came back {r.headers.get('Content-Encoding')}")
    paged = gw.search_for_studies(limit=1, offset=1)
    if len(paged) != 1 or uids(paged, "0020000D")[0] not in studies:
        problem(f"limit=1 offset=1 gave {len(paged)} studies")
    if len(gw.search_for_studies(limit=2)) != min(2, len(studies)):
        problem("limit=2 did not cut the answer to 2")

    for study in studies:
        theirs = orthanc_search(orthanc, f"/studies/{study}/series", {})
        ours = gw.search_for_series(study_instance_uid=study)
        compare_entries(f"series of {study}", ours, theirs, "0020000E")
        theirs = orthanc_search(orthanc, f"/studies/{study}/instances", {})
        ours = gw.search_for_instances(study_instance_uid=study)
        compare_entries(f"instances of {study}", ours, theirs, "00080018")

        # WADO-RS metadata: every attribute Orthanc gives, with the same values.
        r = requests.get(f"{orthanc}/studies/{study}/metadata", headers={"Accept": "application/dicom+json"})
        compare_entries(f"metadata of {study}", gw.retrieve_study_metadata(study), r.json(), "00080018",
                        headers={"Authorization": f"Bearer {token}"}, servers=(gateway, orthanc))

    # WADO-RS instances and frames: the same data set and pixel data as the file sent.
    for ds in local:
        ids = (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        name = f"instance {ids[2]}"
        got = gw.retrieve_instance(*ids)
        if got.PixelData != ds.PixelData:
            problem(f"{name}: the pixel data retrieved as stored differs from the file's")
        for element in ds:
            if element.tag != 0x7FE00010 and element.tag.element != 0 and element.tag in got:
                if got[element.tag].value != element.value and element.VR != "SQ":
                    problem(f"{name}: {element.tag} differs")
            elif element.tag != 0x7FE00010 and element.tag.element != 0:
                problem(f"{name}: {element.tag} is missing")
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        numbers = list(range(1, frames + 1))
        ts = ds.file_meta.TransferSyntaxUID
        stored = gw.retrieve_instance_frames(*ids, frame_numbers=numbers,
                                             media_types=(("application/octet-stream", "*"),))
        if ts.is_compressed:
            expected = list(generate_frames(ds.PixelData, number_of_frames=frames))
        else:
            size = len(ds.PixelData) // frames
            expected = [ds.PixelData[i * size:(i + 1) * size] for i in range(frames)]
        if [bytes(f) for f in stored] != [bytes(e) for e in expected]:
            problem(f"{name}: frames in the stored syntax {ts} differ from the file's")
        if not ts.is_compressed or ts == "1.2.840.10008.1.2.5":
            explicit = gw.retrieve_instance_frames(*ids, frame_numbers=numbers,
                                                   media_types=(("application/octet-stream", EXPLICIT_LE),))
            decoded = ds.pixel_array.reshape(frames, -1) if frames > 1 else ds.pixel_array.reshape(1, -1)
            for n, frame in enumerate(explicit):
                mine = numpy.frombuffer(bytes(frame), dtype=decoded.dtype.newbyteorder("<"))
                if mine.size != decoded[n].size or not numpy.array_equal(mine, decoded[n]):
                    problem(f"{name}: frame {n + 1} in explicit VR little endian differs from pydicom's decoding")
            whole = gw.retrieve_instance(*ids, media_types=(("application/dicom", EXPLICIT_LE),))
            if whole.file_meta.TransferSyntaxUID != EXPLICIT_LE:
                problem(f"{name}: asked in explicit VR little endian, got {whole.file_meta.TransferSyntaxUID}")
            elif not numpy.array_equal(whole.pixel_array, ds.pixel_array):
                problem(f"{name}: the instance in explicit VR little endian has other pixels")

    # Rendered frames and thumbnails, through the viewer's bounded rendering.
    for ds in local[:3]:
        ids = (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        jpeg = gw.retrieve_instance_rendered(*ids, media_types=("image/jpeg",))
        if not jpeg.startswith(b"\xff\xd8"):
            problem(f"instance {ids[2]} rendered is not a JPEG")
        png = gw.retrieve_instance_frames_rendered(*ids, frame_numbers=[1], media_types=("image/png",))
        if not png.startswith(b"\x89PNG"):
            problem(f"frame 1 of {ids[2]} rendered is not a PNG")
        r = requests.get(f"{gateway}/studies/{ids[0]}/series/{ids[1]}/thumbnail",
                         headers={"Authorization": f"Bearer {token}", "Accept": "image/jpeg"})
        if r.status_code != 200 or not r.content.startswith(b"\xff\xd8") or len(r.content) > 64 * 1024:
            problem(f"the thumbnail of series {ids[1]} is {r.status_code}, {len(r.content)} bytes")

    # STOW-RS at the hospital: a key image into a case's study is kept and listed; into a
    # study that is none of the user's cases', refused and named.
    from pydicom.uid import generate_uid
    key_image = pydicom.dcmread(files[0])
    key_image.SeriesInstanceUID = generate_uid()
    key_image.SOPInstanceUID = generate_uid()
    key_image.file_meta.MediaStorageSOPInstanceUID = key_image.SOPInstanceUID
    answer = gw.store_instances([key_image])
    if len(answer.get("ReferencedSOPSequence", [])) != 1:
        problem(f"a key image into a case's study was not stored: {answer}")
    listed = gw.search_for_instances(study_instance_uid=key_image.StudyInstanceUID)
    if key_image.SOPInstanceUID not in uids(listed, "00080018"):
        problem("the stored key image is not listed in its study")
    for change, why in (("PatientID", "another patient id"), ("SOPInstanceUID", "already holds")):
        copy = pydicom.dcmread(files[0])
        copy.SeriesInstanceUID = key_image.SeriesInstanceUID
        copy.SOPInstanceUID = key_image.SOPInstanceUID if change == "SOPInstanceUID" else generate_uid()
        copy.file_meta.MediaStorageSOPInstanceUID = copy.SOPInstanceUID
        if change == "PatientID":
            copy.PatientID = "SOMEONE-ELSE"
        try:
            gw.store_instances([copy])
            problem(f"a key image with {change} changed was stored")
        except requests.HTTPError as e:
            if e.response.status_code != 409 or why not in e.response.headers.get("Warning", ""):
                problem(f"a key image with {change} changed: {e.response.status_code} {e.response.headers.get('Warning')}")
    # Nor the SOP Instance UID of an instance of another study, another patient's: a PACS
    # would take it for a new version of that instance.
    elsewhere = next(ds for ds in local if ds.StudyInstanceUID != key_image.StudyInstanceUID)
    reuse = pydicom.dcmread(files[0])
    reuse.SeriesInstanceUID = key_image.SeriesInstanceUID
    reuse.SOPInstanceUID = elsewhere.SOPInstanceUID
    reuse.file_meta.MediaStorageSOPInstanceUID = reuse.SOPInstanceUID
    try:
        gw.store_instances([reuse])
        problem("a key image reusing another study's SOP Instance UID was stored")
    except requests.HTTPError as e:
        if e.response.status_code != 409 or "already holds" not in e.response.headers.get("Warning", ""):
            problem(f"reusing another study's SOP Instance UID: {e.response.status_code} {e.response.headers.get('Warning')}")
    stranger = pydicom.dcmread(files[0])
    stranger.StudyInstanceUID = generate_uid()
    stranger.SOPInstanceUID = generate_uid()
    stranger.file_meta.MediaStorageSOPInstanceUID = stranger.SOPInstanceUID
    try:
        answer = gw.store_instances([stranger])
        problem(f"an instance of a study outside the user's cases was stored: {answer}")
    except requests.HTTPError as e:
        if e.response.status_code != 409 or stranger.SOPInstanceUID not in e.response.text:
            problem(f"refusing a stranger's study answered {e.response.status_code}: {e.response.text[:300]}")

    # Someone whose cases do not include these studies sees none of them.
    other = client(gateway, other_token)
    if other.search_for_studies():
        problem("another specialist's search lists studies")
    try:
        other.retrieve_study_metadata(studies[0])
        problem("another specialist read a study's metadata")
    except requests.HTTPError as e:
        if e.response.status_code != 404:
            problem(f"another specialist got {e.response.status_code}, not 404")
    print(json.dumps({"problems": len(problems), "studies": len(studies), "instances": len(local)}))
    return min(len(problems), 100)


if __name__ == "__main__":
    if sys.argv[1] == "stow":
        sys.exit(stow(sys.argv[2], sys.argv[3] or None, sys.argv[4:]))
    if sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]))
    sys.exit(f"unknown command {sys.argv[1]}")
