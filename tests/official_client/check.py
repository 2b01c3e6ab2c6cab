"""Drives the official Campaign Monitor Python client (createsend) against the emulator.

Only the transport is swapped: the client always opens HTTPS, and the emulator speaks
plain HTTP on loopback. Everything the client does with the answers (status handling,
JSON parsing into objects, error classes) runs unchanged.

Usage: check.py BASE_URL API_KEY LIST_ID
"""
import http.client
import sys

import createsend
import createsend.createsend as core
from createsend import CreateSend, List, Subscriber

base_url, api_key, list_id = sys.argv[1:4]
core.VerifiedHTTPSConnection = lambda host, timeout=None, **_: http.client.HTTPConnection(host, timeout=timeout)
CreateSend.base_uri = base_url
auth = {"api_key": api_key}

cs = CreateSend(auth)
assert cs.systemdate(), "systemdate"
clients = cs.clients()
assert clients[0].ClientID, "clients"
lst = List(auth, list_id)
details = lst.details()
assert details.ListID == list_id, details.ListID
key = lst.create_custom_field("website", "Text")
assert key == "[website]", key
fields = lst.custom_fields()
assert fields[0].Key == "[website]", fields[0].Key

sub = Subscriber(auth, list_id)
added = sub.add(list_id, "one@example.com", "One", [{"Key": "website", "Value": "https://one"}], True, "Yes")
assert added == "one@example.com", added
result = sub.import_subscribers(
    list_id,
    [
        {"EmailAddress": "two@example.com", "Name": "Two", "ConsentToTrack": "No"},
        {"EmailAddress": "one@example.com", "Name": "One again", "ConsentToTrack": "Unchanged"},
    ],
    False,
)
assert result.TotalNewSubscribers == 1 and result.TotalExistingSubscribers == 1, vars(result)

# A 400 code 210 is turned by the client into its ResultData: the same form as a 201.
partial = sub.import_subscribers(list_id, [{"EmailAddress": "bad@nodot", "ConsentToTrack": "Yes"}], False)
assert partial.FailureDetails[0].Code == 1, vars(partial)
assert partial.FailureDetails[0].EmailAddress == "bad@nodot"

got = Subscriber(auth, list_id, "one@example.com").get()
assert got.Name == "One again" and got.CustomFields[0].Value == "https://one", vars(got)
assert got.ConsentToTrack == "Yes", got.ConsentToTrack

stats = lst.stats()
assert stats.TotalActiveSubscribers == 2, stats.TotalActiveSubscribers
page = lst.active(page=1, page_size=10)
assert [r.EmailAddress for r in page.Results] == ["one@example.com", "two@example.com"]

Subscriber(auth, list_id, "two@example.com").unsubscribe()
assert lst.unsubscribed().Results[0].EmailAddress == "two@example.com"
Subscriber(auth, list_id, "one@example.com").delete()
assert lst.deleted().TotalNumberOfRecords == 1
assert Subscriber(auth, list_id, "one@example.com").get().State == "Deleted"
try:
    Subscriber(auth, list_id, "one@example.com").delete()
    raise AssertionError("deleting a deleted subscriber must raise")
except createsend.BadRequest as e:
    assert e.data.Code == 203, vars(e.data)

try:
    List(auth, "no-such-list").details()
    raise AssertionError("an unknown list must raise")
except createsend.BadRequest as e:
    assert e.data.Code == 101
try:
    CreateSend({"api_key": "wrong"}).systemdate()
    raise AssertionError("a wrong key must raise")
except createsend.Unauthorized as e:
    assert e.data.Code == 50
print("official client: ok")
