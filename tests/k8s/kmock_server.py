#!/usr/bin/env python3
"""Serve the Kubernetes API emulator of the PyPI package `kmock` (tested: 0.8) on 127.0.0.1.

Usage: python3 tests/k8s/kmock_server.py --port N [--no-shims]   (N=0 picks a free port)
Prints one stdout line `listening on 127.0.0.1:<port>` once it accepts connections; exits
cleanly on SIGTERM/SIGINT, and also when its parent process exits (so run it as a direct child,
or under a shell that stays). In memory only: every start is an empty cluster.

kmock stores the objects and serves GET/LIST/WATCH/POST/PATCH/DELETE, finalizers, watch events
and discovery (its bundled list of a K3s cluster's built-in kinds). The code marked SHIM is ours,
added where kmock 0.8 lacks what kube-rs clients need; --no-shims serves kmock as it is.
"""
import os
PARENT = os.getppid()  # taken first: the runner also exits once its parent has gone (see main)
import argparse, asyncio, datetime, re, signal, uuid

import aiohttp.web, attrs, jsonpatch, kmock
from kmock._internal import parsing  # private module: used by SHIM 1 only

A, NS = kmock.action, kmock.resource('', 'v1', 'namespaces')
NEEDED = ['v1/namespaces', 'v1/services', 'v1/configmaps', 'v1/secrets', 'v1/persistentvolumeclaims',
          'v1/pods', 'v1/nodes', 'v1/events', 'apps/v1/deployments', 'apps/v1/statefulsets', 'batch/v1/jobs']
# SHIM 7: kmock's error reasons are prose; kube-rs' is_not_found()/is_already_exists() need these.
REASONS = {'Not Found': 'NotFound', 'Endpoint Not Found': 'NotFound', 'Resource Not Found': 'NotFound',
           'Object Not Found': 'NotFound', 'Object Already Exists': 'AlreadyExists'}
BAD_INPUT = (ValueError, TypeError, jsonpatch.JsonPatchException, jsonpatch.JsonPointerException)


def k8s_error(code, reason, message):
    return kmock.KubernetesError(status=code, reason=reason, message=message)


# SHIM 1: kmock 0.8 parses /api/v1/namespaces[/x] as "inside a namespace" (500 / 404), so the
# namespaces resource itself is unreachable. Route these paths to the cluster-scoped resource.
_kmock_parse_path = parsing.parse_path
def parse_path(path):
    m = re.fullmatch(r'/api/v1/namespaces(?:/([^/]+)(?:/(status|finalize))?)?/?', path)
    return parsing.ParsedPath('', 'v1', 'namespaces', None, m[1], m[2]) if m else _kmock_parse_path(path)


# SHIM 5: label and field selectors (kmock ignores both, in LIST and in WATCH).
def selected(request, obj):
    for term in filter(None, request.params.get('fieldSelector', '').split(',')):
        path, op, want = re.fullmatch(r'([^!=]+)(==|=|!=)(.*)', term.strip()).groups()
        val = obj
        for part in path.split('.'):
            val = val.get(part, '') if isinstance(val, dict) else ''
        if (str(val) == want) == (op == '!='):
            return False
    labels = obj.get('metadata', {}).get('labels') or {}
    for term in filter(None, (t.strip() for t in re.split(r',(?![^()]*\))', request.params.get('labelSelector', '')))):
        if m := re.fullmatch(r'([^!=\s]+)\s*(==|=|!=)\s*(\S*)', term):
            ok = (labels.get(m[1]) == m[3]) != (m[2] == '!=')
        elif m := re.fullmatch(r'(\S+)\s+(in|notin)\s*\((.*)\)', term):
            ok = (labels.get(m[1]) in [v.strip() for v in m[3].split(',')]) != (m[2] == 'notin')
        else:  # "key" or "!key"
            ok = (term.lstrip('!').strip() in labels) != term.startswith('!')
        if not ok:
            return False
    return True


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesEmulator):
    _rv: int = 0  # SHIM 3: one cluster-wide resourceVersion counter, like etcd's revision
    _wlock: asyncio.Lock = attrs.field(factory=asyncio.Lock)  # our checks + kmock's write, atomically

    def next_rv(self):
        self._rv += 1
        return str(self._rv)

    def live(self, key):
        return self.objects[key].raw if key in self.objects and not self.objects[key].deleted else None

    def stamp(self, obj, namespace):  # SHIM 3: server-set metadata on create
        meta = dict(obj.get('metadata') or {}, uid=str(uuid.uuid4()), resourceVersion=self.next_rv(), generation=1,
                    creationTimestamp=datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ'))
        if namespace:  # SHIM 2: kmock leaves the URL's namespace out of the object, so watches miss it
            meta['namespace'] = namespace
        if not meta.get('name'):  # SHIM 3: generateName (kmock would store it under the name None)
            if not meta.get('generateName'):
                raise k8s_error(422, 'Invalid', 'metadata.name: Required value')
            meta['name'] = meta['generateName'] + uuid.uuid4().hex[:5]
        return dict(obj, metadata=meta)

    async def _handle(self, request):
        changed = request
        try:
            if request.resource is None or request.method not in ('POST', 'PUT', 'PATCH', 'DELETE'):
                return await super()._handle(request)
            async with self._wlock:
                changed = self.prepare(request)
                self._requests.append(changed)  # kmock routes only the requests it holds (by identity)
                response = await super()._handle(changed)
                if request.resource == NS and request.action == A.DELETE:
                    await self.cascade(request.name)
                return response
        finally:  # SHIM 9: kmock keeps every request and error for test assertions, and routes each
            # request by scanning all of them: keep only those in flight, or memory and latency grow.
            self._requests[:] = [r for r in self._requests if r is not request and r is not changed]
            if self._errors:
                self._errors[-1].clear()

    def prepare(self, r):  # rewrite a write request before kmock stores it
        ns, name, sub, data = r.namespace, r.name, r.subresource, r.data
        old = self.live((r.resource, ns, name)) if name else None
        if r.method == 'PATCH' and r.headers.get('Content-Type', '').startswith('application/apply-patch'):
            if not isinstance(data, dict):  # SHIM 6: a YAML body; kmock would silently apply nothing
                raise k8s_error(415, 'UnsupportedMediaType', 'only JSON apply bodies are supported here')
            if old is None:  # SHIM 6: server-side apply creates an absent object (kmock: 404)
                r = attrs.evolve(r, action=A.CREATE, data=dict(data, metadata=dict(data.get('metadata') or {}, name=name)))
        if r.action == A.CREATE and isinstance(r.data, dict):
            home = self.live((NS, None, ns)) if ns else {}  # SHIM 8: kmock creates into any namespace
            if home is None:
                raise k8s_error(404, 'NotFound', f'namespaces "{ns}" not found')
            if home.get('metadata', {}).get('deletionTimestamp'):
                raise k8s_error(403, 'Forbidden', f'namespace {ns} is being terminated')
            obj = self.stamp(r.data, ns)
            if r.resource == NS:
                obj.setdefault('status', {'phase': 'Active'})
            return attrs.evolve(r, data=obj)
        if r.method == 'PUT' and name and isinstance(data, dict):  # SHIM 4: replace (kmock: 404)
            if old is None:
                raise k8s_error(404, 'NotFound', f'{r.resource.plural} "{name}" not found')
            self.check_rv(data, old, name)
            if sub == 'status':
                new = dict(old, status=data.get('status'))
            else:  # the server keeps its own metadata and the status
                keep = ('uid', 'creationTimestamp', 'deletionTimestamp', 'generation', 'namespace')
                new = {k: v for k, v in data.items() if k != 'status'} | ({'status': old['status']} if 'status' in old else {})
                new['metadata'] = dict(data.get('metadata') or {}, **{k: v for k, v in old['metadata'].items() if k in keep})
                if new.get('spec') != old.get('spec'):
                    new['metadata']['generation'] = old['metadata'].get('generation', 1) + 1
            new['metadata'] = dict(new['metadata'], resourceVersion=self.next_rv())
            return attrs.evolve(r, action=A.UPDATE, data=[{'op': 'replace', 'path': '', 'value': new}])
        if r.action == A.UPDATE and old is not None:  # PATCH: bump resourceVersion (and generation)
            gen = old['metadata'].get('generation', 1) + 1
            if isinstance(data, dict):
                self.check_rv(data, old, name)
                # SHIM 10: a /status write changes only the status; the main path never changes it
                data = {k: v for k, v in data.items() if (k == 'status') == (sub == 'status')}
                meta = dict(data.get('metadata') or {}, resourceVersion=self.next_rv())
                data = dict(data, metadata=meta | ({'generation': gen} if 'spec' in data and not sub else {}))
            elif isinstance(data, list):  # a JSON patch
                data = data + [{'op': 'add', 'path': '/metadata/resourceVersion', 'value': self.next_rv()}]
                if not sub and any(str(op.get('path', '')).startswith('/spec') for op in r.data):
                    data.append({'op': 'add', 'path': '/metadata/generation', 'value': gen})
            return attrs.evolve(r, data=data)
        return r

    def check_rv(self, data, old, name):  # SHIM 4: optimistic concurrency on metadata.resourceVersion
        want = (data.get('metadata') or {}).get('resourceVersion')
        if want and want != old['metadata'].get('resourceVersion'):
            raise k8s_error(409, 'Conflict', f'Operation cannot be fulfilled on "{name}": the object has been '
                            'modified; please apply your changes to the latest version and try again')

    async def cascade(self, namespace):  # SHIM 8: deleting a namespace deletes its content at once
        async with self._lock:
            for (res, ns, _), obj in list(self.objects.items()):
                if ns == namespace and not obj.deleted:
                    raw = obj.raw
                    obj.delete()
                    await self._buses[res].put({'type': 'DELETED', 'object': raw})

    async def _render_error(self, exc):  # SHIM 7: canonical reasons; bad patches are 422, not 500
        if isinstance(exc, kmock.KubernetesError) and exc.reason in REASONS:
            exc = attrs.evolve(exc, reason=REASONS[exc.reason])
        elif isinstance(exc, BAD_INPUT):
            exc = k8s_error(422, 'Invalid', repr(exc))
        return await super()._render_error(exc)

    async def _serve_version(self, request):  # SHIM 11: kmock says groupVersion "/v1" for /api/v1
        doc = await super()._serve_version(request)
        return dict(doc, groupVersion=doc['groupVersion'].lstrip('/'))

    async def _serve_list(self, request):  # SHIMS 5 and 3: selectors, the List kind, resourceVersion
        doc = await super()._serve_list(request)
        res = request.resource
        return {'apiVersion': f'{res.group}/{res.version}'.lstrip('/'), 'kind': f'{self.resources[res].kind}List',
                'metadata': {'resourceVersion': str(self._rv)}, 'items': [o for o in doc['items'] if selected(request, o)]}

    async def _serve_watch(self, request):  # SHIMS 5 and 12: selectors, resourceVersion, timeoutSeconds
        since = request.params.get('resourceVersion', '0')
        since = int(since) if since.isdigit() else 0
        deadline = asyncio.get_running_loop().time() + float(request.params.get('timeoutSeconds') or 1800)
        events = super()._serve_watch(request)
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        event = await anext(events)
                except (TimeoutError, StopAsyncIteration):
                    return  # ends the response, as the API server does at timeoutSeconds
                if isinstance(event, dict):  # kmock replays every live object as ADDED, whatever the rv
                    obj, rv = event['object'], str(event['object']['metadata'].get('resourceVersion', ''))
                    if not selected(request, obj) or (event['type'] == 'ADDED' and rv.isdigit() and int(rv) <= since):
                        continue
                yield event
        finally:
            await events.aclose()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--port', type=int, default=0)
    ap.add_argument('--no-shims', action='store_true', help="serve kmock's emulator as it is")
    args = ap.parse_args()
    if not args.no_shims:
        parsing.parse_path = parse_path  # SHIM 1
    async with (kmock.KubernetesEmulator() if args.no_shims else Emulator()) as emu:
        emu.resources.load_bundled()  # kmock's own discovery data
        assert all(r in emu.resources for r in NEEDED), 'kmock lacks a needed resource'
        if not args.no_shims:  # SHIM 8: the namespaces that every cluster starts with
            for n in ('default', 'kube-system', 'kube-public', 'kube-node-lease'):
                emu.objects[NS, None, n] = emu.stamp({'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': n},
                                                      'status': {'phase': 'Active'}}, None)
        loop = asyncio.get_running_loop()
        server = aiohttp.web.Server(emu, handler_cancellation=True,  # a client that leaves ends its watch
                                    request_factory=lambda *a: aiohttp.web.BaseRequest(*a, loop, client_max_size=3 << 20))
        runner = aiohttp.web.ServerRunner(server, shutdown_timeout=0.1)
        await runner.setup()
        await aiohttp.web.TCPSite(runner, '127.0.0.1', args.port).start()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f'listening on 127.0.0.1:{runner.addresses[0][1]}', flush=True)
        # Also stop once orphaned: a test binary killed outright (or a SIGKILLed wrapper shell) sends
        # no SIGTERM, and the server would otherwise outlive it.
        while not stop.is_set() and os.getppid() == PARENT:
            await asyncio.sleep(0.5)
        await runner.cleanup()


if __name__ == '__main__':
    asyncio.run(main())
