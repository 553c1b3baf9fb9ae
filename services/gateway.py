"""Gateway: the HTTP face of the pipeline.

An upload (its body already read, within limits, before a worker took it)
is sniffed from its headers, reduced to what is stored (metadata stripped,
trailing bytes dropped), written to the blob store under storage's grant
and registered, announced with an ``image_uploaded`` event and answered with
202 -- no pixel is decoded here.  Everything else is a read through storage.
"""
from dataclasses import asdict

import kombu
from nameko.events import BROADCAST
from werkzeug.wrappers import Response
from werkzeug.wsgi import wrap_file

from imagepipe.errors import BadRequest
from imagepipe.ids import check_image_id
from imagepipe.records import FINISHED, PENDING
from imagepipe.rendering.focus import focus_from
from imagepipe.rendering.probe import probe, probe_with_orientation
from imagepipe.rendering.strip import stored_form
from imagepipe.storage.direct import store_original
from imagepipe.web import api
from imagepipe.web.negotiation import negotiate
from imagepipe.web.openapi import openapi_spec
from imagepipe.web.page import PAGE, security_headers, web_assets
from imagepipe.webhooks.urls import callback_url_from
from services.extensions.events import JobDispatcher, event_subscriber
from services.extensions.http import error_response, http, json_response
from services.extensions.live import LiveStatus
from services.extensions.observability import LogContext, Metrics, exposition
from services.extensions.providers import BlobAccess, CallbackUrls, Config
from services.extensions.rpc import StorageRpc
from services.topology import JOB_EVENT, PROCESSED_EVENT, PROCESSED_SOURCE

ORIGINAL = "original"
YEAR = 31536000
DOWNLOAD_CHUNK = 256 * 1024


class GatewayService:
    name = "gateway"

    config = Config()
    storage = StorageRpc()
    blobs = BlobAccess()
    dispatch = JobDispatcher()
    callback_urls = CallbackUrls()
    live = LiveStatus()
    metrics = Metrics(upload_entrypoint="upload")
    log_context = LogContext()

    @http("POST", "/upload", rate="upload", upload=True)
    def upload(self, request):
        fields = request.upload.fields
        callback_url = callback_url_from(request.args, fields)
        focus = focus_from(request.args, fields)
        if callback_url:
            self.callback_urls.check(callback_url)  # SSRF rule: refused before anything is stored
        data, info = self._stored_form(request.upload.read())
        record, _created = store_original(
            self.storage, self.blobs.direct_for(self.storage), data,
            dict(asdict(info), focus=focus), callback_url, request.tenant)
        # Pending: new, reset after a failure, or an earlier dispatch failed.
        # A re-upload of an image being processed needs no second job: a crash
        # redelivers the first, and the storage sweeper heals a lost one.
        if record["status"] == PENDING:
            self.dispatch(JOB_EVENT, {"id": record["id"]})
        elif callback_url and record["status"] in FINISHED:
            # finished already: no event will come, so deliver to the new URL now
            self.callback_urls.request_delivery(record["id"], callback_url)
        body = api.upload_accepted(record, self.config.public_url)
        return json_response(body, status=202, headers={"Location": body["links"]["self"]})

    @http("GET", "/images")
    def list_images(self, request):
        limit = parse_limit(request.args.get("limit"))
        page = self.storage.list_images(limit, request.args.get("cursor"), request.tenant)
        return json_response(api.image_list(page, limit, self.config.public_url))

    @http("GET", "/images/<image_id>")
    def image_status(self, request, image_id):
        record = self.storage.get_image(check_image_id(image_id), request.tenant)
        return json_response(api.image_status(record, self.config.public_url))

    @http("GET", "/images/<image_id>/<name>")
    def image_bytes(self, request, image_id, name):
        record = self.storage.get_image(check_image_id(image_id), request.tenant)
        headers = {"Cache-Control": self._cache_control(immutable=name == ORIGINAL),
                   "X-Content-Type-Options": "nosniff"}
        vary = ["Authorization"] if request.tenant is not None else []
        preset, fmt = name, None
        if name == ORIGINAL:
            meta = record["original"]
        else:
            preset, fmt, meta, negotiated = negotiate(record, name, request.headers.get("Accept"))
            if negotiated:
                vary.append("Accept")
                headers["Content-Location"] = api.rendition_url(image_id, preset, fmt)
        if vary:
            headers["Vary"] = ", ".join(vary)
        blobs = self.blobs.direct_for(self.storage)
        if meta["sha256"] in request.if_none_match:
            # revalidation: answer before touching the bytes
            response = Response(status=304, headers=headers)
        elif blobs is not None:
            # streamed in chunks, after this worker returns, at the client's pace
            granted = self.storage.grant_read(image_id, preset, request.tenant, fmt)
            body = wrap_file(request.environ, blobs.open(granted["grant"]), DOWNLOAD_CHUNK)
            response = Response(body, mimetype=meta["mime_type"], headers=headers,
                                direct_passthrough=True)
            response.content_length = meta["bytes"]
        else:
            data = (self.storage.get_original(image_id, request.tenant) if name == ORIGINAL
                    else self.storage.get_variant(image_id, preset, fmt, request.tenant)[0])
            response = Response(data, mimetype=meta["mime_type"], headers=headers)
        response.set_etag(meta["sha256"])
        return response.make_conditional(request)

    @http("GET", "/images/<image_id>/events", rate=None)
    def image_events(self, request, image_id):
        check_image_id(image_id)
        storage, tenant = self.storage, request.tenant  # the stream outlives this worker
        return self.live.open_stream(request, image_id, lambda: storage.get_image(image_id, tenant))

    # Every gateway process gets every event (its own auto-delete queue):
    # the streams waiting for an image may be open on any of them.
    @event_subscriber(PROCESSED_SOURCE, PROCESSED_EVENT, handler_type=BROADCAST,
                      reliable_delivery=False)
    def image_processed(self, event):
        self.live.notify(event["id"])

    @http("GET", "/health", public=True, rate=None)
    def health(self, request):
        try:
            with kombu.Connection(self.config.amqp_uri, connect_timeout=3) as conn:
                conn.ensure_connection(max_retries=1)
        except Exception as exc:  # any failure to connect means unhealthy
            return error_response("broker_unreachable", "cannot reach the message broker: {}".format(
                type(exc).__name__), 503, {"Retry-After": "5"})
        return json_response({"status": "ok", "broker": "ok"})

    @http("GET", "/", public=True)
    def web_page(self, request):
        return self._web_asset(request, PAGE)

    @http("GET", "/static/<name>", public=True)
    def web_static(self, request, name):
        return self._web_asset(request, name)

    @http("GET", "/metrics")
    def metrics_page(self, request):
        # the Prometheus text of every service in this process (one registry)
        body, content_type = exposition(request.headers.get("Accept"))
        return Response(body, content_type=content_type)

    @http("GET", "/openapi.json", public=True)
    def openapi(self, request):
        return json_response(openapi_spec(self.config.public_url))

    def _stored_form(self, upload):
        """``(bytes to store, their ImageInfo)``: the upload, less metadata unless kept."""
        info, orientation = probe_with_orientation(
            upload, self.config.allowed_formats, self.config.max_pixels, self.config.decode_limits)
        if self.config.keep_metadata:
            return upload, info
        stored = stored_form(upload, info.format, orientation)
        if stored is upload:
            return upload, info
        # what the catalog describes is what is stored (MPO keeps one picture)
        return stored, probe(stored, self.config.allowed_formats, self.config.max_pixels,
                             self.config.decode_limits)

    def _cache_control(self, immutable):
        # with keys, images are one key's: no shared cache may keep them
        scope = "private" if self.config.api_keys else "public"
        return "{}, max-age={}{}".format(scope, YEAR, ", immutable" if immutable else "")

    def _web_asset(self, request, name):
        asset = web_assets().get(name)
        response = Response(asset.data, content_type=asset.content_type,
                            headers=security_headers(self.config.public_url))
        response.set_etag(asset.etag)
        return response.make_conditional(request)


def parse_limit(value, default=20, maximum=100):
    if value is None:
        return default
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if not 1 <= limit <= maximum:
        raise BadRequest("limit must be a whole number from 1 to {}".format(maximum))
    return limit
