//! The policy table: every field of a pod spec, container, security context, volume
//! source, projection, Service spec and claim spec, with its verdict. `table_tests`
//! checks each row with a manifest, and fails when k8s-openapi knows a field the table
//! does not list, so a new Kubernetes field gets a verdict before it gets through.
//! Rows marked `issue 24` are the registration probes the issue found accepted.

use super::KubernetesPolicy;

/// Where a row's fragment goes in the test manifest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Place {
    /// The Deployment's pod spec.
    Pod,
    /// Its first container.
    Container,
    /// An init container.
    Init,
    /// An ephemeral container.
    Ephemeral,
    /// The pod's security context.
    PodSecurity,
    /// The first container's security context.
    Security,
    /// A volume of the pod (the fragment is its source).
    Volume,
    /// A source of a projected volume.
    Projection,
    /// The Service's spec.
    Service,
    /// The PersistentVolumeClaim's spec.
    Claim,
    /// The StatefulSet's claim template.
    ClaimTemplate,
    /// An ephemeral volume's claim template.
    EphemeralClaim,
    /// The Deployment itself.
    Deployment,
    /// The Job's spec.
    Job,
    /// The Deployment's pod template.
    Template,
}

impl Place {
    /// The path refusals name, up to the row's field.
    pub(super) fn prefix(self) -> &'static str {
        match self {
            Place::Pod => "spec.template.spec",
            Place::Container => "spec.template.spec.containers[0]",
            Place::Init => "spec.template.spec.initContainers[0]",
            Place::Ephemeral => "spec.template.spec.ephemeralContainers[0]",
            Place::PodSecurity => "spec.template.spec.securityContext",
            Place::Security => "spec.template.spec.containers[0].securityContext",
            Place::Volume => "spec.template.spec.volumes[0]",
            Place::Projection => "spec.template.spec.volumes[0].projected.sources[0]",
            Place::Service | Place::Claim | Place::Job => "spec",
            Place::ClaimTemplate => "spec.volumeClaimTemplates[0]",
            Place::EphemeralClaim => "spec.template.spec.volumes[0].ephemeral.volumeClaimTemplate",
            Place::Deployment => "",
            Place::Template => "spec.template",
        }
    }

    /// The object the fragment is merged into, in the manifest, and the path to it.
    pub(super) fn target(self) -> (usize, &'static str) {
        match self {
            Place::Pod => (0, "/spec/template/spec"),
            Place::Container => (0, "/spec/template/spec/containers/0"),
            Place::Init => (0, "/spec/template/spec/initContainers/0"),
            Place::Ephemeral => (0, "/spec/template/spec/ephemeralContainers/0"),
            Place::PodSecurity => (0, "/spec/template/spec/securityContext"),
            Place::Security => (0, "/spec/template/spec/containers/0/securityContext"),
            Place::Volume => (0, "/spec/template/spec/volumes/0"),
            Place::Projection => (0, "/spec/template/spec/volumes/0/projected/sources/0"),
            Place::EphemeralClaim => (0, "/spec/template/spec/volumes/0/ephemeral/volumeClaimTemplate"),
            Place::Deployment => (0, ""),
            Place::Template => (0, "/spec/template"),
            Place::Service => (1, "/spec"),
            Place::Claim => (2, "/spec"),
            Place::ClaimTemplate => (3, "/spec/volumeClaimTemplates/0"),
            Place::Job => (4, "/spec"),
        }
    }
}

/// A setting that turns a refusal into an acceptance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Setting {
    Privileged,
    BindMounts,
    External,
    Scheduling,
    HostPorts,
    Extended,
}

impl Setting {
    /// Its variable, which the refusal names.
    pub(super) fn variable(self) -> &'static str {
        match self {
            Setting::Privileged => "ESM_DOCKER_ALLOW_PRIVILEGED",
            Setting::BindMounts => "ESM_DOCKER_ALLOW_BIND_MOUNTS",
            Setting::External => "ESM_DOCKER_ALLOW_EXTERNAL",
            Setting::Scheduling => "ESM_K8S_ALLOW_SCHEDULING",
            Setting::HostPorts => "ESM_HOST_PORT_RANGE",
            Setting::Extended => "ESM_K8S_MAX_EXTENDED_RESOURCES",
        }
    }

    /// The default policy with this setting on.
    pub(super) fn on(self) -> KubernetesPolicy {
        let mut policy = KubernetesPolicy::default();
        match self {
            Setting::Privileged => policy.docker.allow_privileged = true,
            Setting::BindMounts => policy.docker.allow_bind_mounts = true,
            Setting::External => policy.docker.allow_external = true,
            Setting::Scheduling => policy.allow_scheduling = true,
            Setting::HostPorts => policy.docker.host_ports = Some((1, 65535)),
            Setting::Extended => policy.max_extended_resources = 4,
        }
        policy
    }
}

/// What registration does with a row's manifest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Verdict {
    /// Accepted under the default settings.
    Allowed,
    /// Refused whatever the settings.
    Refused,
    /// Refused unless the setting allows it.
    Needs(Setting),
    /// Refused above a cap (the row's fragment); accepted within it (this fragment).
    Bounded(&'static str),
}
pub(super) use Place::*;
pub(super) use Setting::*;
pub(super) use Verdict::*;

/// One row: a field of the struct at `place`, a fragment setting it, and the verdict.
pub(super) struct Row {
    pub(super) place: Place,
    pub(super) field: &'static str,
    pub(super) yaml: &'static str,
    pub(super) verdict: Verdict,
    /// What the refusal names, after the place's prefix (the field by default).
    at: Option<&'static str>,
}

fn row(place: Place, field: &'static str, yaml: &'static str, verdict: Verdict) -> Row {
    Row { place, field, yaml, verdict, at: None }
}

impl Row {
    /// The refusal names `at` (a deeper path, or a whole message part).
    fn at(mut self, at: &'static str) -> Row {
        self.at = Some(at);
        self
    }

    /// What a refusal must contain.
    pub(super) fn expected(&self) -> String {
        match (self.at, self.place.prefix()) {
            (Some(at), _) if at.contains(' ') => at.to_owned(),
            (at, "") => at.unwrap_or(self.field).to_owned(),
            (at, prefix) => format!("{prefix}.{}", at.unwrap_or(self.field)),
        }
    }
}

/// The table.
#[rustfmt::skip]
pub(super) fn table() -> Vec<Row> {
    vec![
        // PodSpec.
        row(Pod, "activeDeadlineSeconds", "activeDeadlineSeconds: 600", Allowed),
        row(Pod, "affinity", "affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: node-role.kubernetes.io/control-plane, operator: Exists}]}]}}}", Needs(Scheduling)),
        row(Pod, "affinity", "affinity: {podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: kubernetes.io/hostname, namespaceSelector: {}, labelSelector: {matchLabels: {app: db}}}]}}", Needs(Scheduling)),
        row(Pod, "automountServiceAccountToken", "automountServiceAccountToken: true", Allowed),
        row(Pod, "containers", "containers: [{name: a, image: nginx}, {name: b, image: redis}]", Allowed),
        row(Pod, "dnsConfig", "dnsConfig: {nameservers: [1.1.1.1], searches: [example.com]}", Allowed),
        row(Pod, "dnsPolicy", "dnsPolicy: Default", Allowed),
        row(Pod, "enableServiceLinks", "enableServiceLinks: true", Allowed),
        row(Pod, "ephemeralContainers", "ephemeralContainers: [{name: debug, image: busybox}]", Allowed),
        row(Pod, "hostAliases", "hostAliases: [{ip: 10.0.0.1, hostnames: [db]}]", Allowed),
        row(Pod, "hostIPC", "hostIPC: true", Needs(Privileged)),
        row(Pod, "hostNetwork", "hostNetwork: true", Needs(Privileged)),
        row(Pod, "hostPID", "hostPID: true", Needs(Privileged)),
        row(Pod, "hostUsers", "hostUsers: false", Allowed),
        row(Pod, "hostUsers", "hostUsers: true", Allowed),
        row(Pod, "hostname", "hostname: web", Allowed),
        row(Pod, "imagePullSecrets", "imagePullSecrets: [{name: s1}]", Allowed),
        row(Pod, "imagePullSecrets", "imagePullSecrets: [{name: registry-of-another}]", Refused).at("imagePullSecrets[0].name"),
        row(Pod, "initContainers", "initContainers: [{name: setup, image: busybox}]", Allowed),
        row(Pod, "nodeName", "nodeName: control-plane-1", Needs(Scheduling)), // issue 24
        row(Pod, "nodeSelector", "nodeSelector: {node-role.kubernetes.io/control-plane: ''}", Needs(Scheduling)),
        row(Pod, "os", "os: {name: linux}", Allowed),
        // The API server refuses an overhead that is not its RuntimeClass's.
        row(Pod, "overhead", "overhead: {cpu: 100m}", Allowed),
        row(Pod, "preemptionPolicy", "preemptionPolicy: PreemptLowerPriority", Needs(Scheduling)),
        row(Pod, "priority", "priority: 2000001000", Needs(Scheduling)),
        row(Pod, "priorityClassName", "priorityClassName: system-node-critical", Needs(Scheduling)), // issue 24
        row(Pod, "readinessGates", "readinessGates: [{conditionType: example.com/ready}]", Allowed),
        row(Pod, "resourceClaims", "resourceClaims: [{name: gpu, resourceClaimName: gpu}]", Needs(External)),
        row(Pod, "resources", "resources: {limits: {cpu: '100000'}}", Bounded("resources: {limits: {cpu: '2'}}")),
        row(Pod, "restartPolicy", "restartPolicy: Always", Allowed),
        row(Pod, "runtimeClassName", "runtimeClassName: runc-privileged", Needs(Privileged)), // issue 24
        row(Pod, "schedulerName", "schedulerName: my-scheduler", Needs(Scheduling)),          // issue 24
        row(Pod, "schedulingGates", "schedulingGates: [{name: example.com/wait}]", Allowed),
        row(Pod, "securityContext", "securityContext: {runAsUser: 0}", Allowed),
        row(Pod, "serviceAccount", "serviceAccount: admin", Refused),
        row(Pod, "serviceAccountName", "serviceAccountName: cluster-admin", Refused),
        row(Pod, "serviceAccountName", "serviceAccountName: default", Allowed),
        row(Pod, "setHostnameAsFQDN", "setHostnameAsFQDN: true", Allowed),
        row(Pod, "shareProcessNamespace", "shareProcessNamespace: true", Allowed),
        row(Pod, "subdomain", "subdomain: web", Allowed),
        row(Pod, "terminationGracePeriodSeconds", "terminationGracePeriodSeconds: 30", Allowed),
        row(Pod, "tolerations", "tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]", Needs(Scheduling)), // issue 24
        row(Pod, "topologySpreadConstraints", "topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: web}}}]", Allowed),
        row(Pod, "volumes", "volumes: [{name: tmp, emptyDir: {}}]", Allowed),
        // PodSecurityContext.
        row(PodSecurity, "appArmorProfile", "appArmorProfile: {type: Unconfined}", Needs(Privileged)).at("appArmorProfile.type"), // issue 24
        row(PodSecurity, "appArmorProfile", "appArmorProfile: {type: RuntimeDefault}", Allowed),
        row(PodSecurity, "fsGroup", "fsGroup: 0", Allowed),
        row(PodSecurity, "fsGroupChangePolicy", "fsGroupChangePolicy: OnRootMismatch", Allowed),
        row(PodSecurity, "runAsGroup", "runAsGroup: 0", Allowed),
        row(PodSecurity, "runAsNonRoot", "runAsNonRoot: true", Allowed),
        // As on Docker, where a container's user is the image's (often root) unless said.
        row(PodSecurity, "runAsUser", "runAsUser: 0", Allowed),
        row(PodSecurity, "seLinuxChangePolicy", "seLinuxChangePolicy: MountOption", Allowed),
        row(PodSecurity, "seLinuxOptions", "seLinuxOptions: {user: system_u, role: system_r, type: spc_t}", Needs(Privileged)), // issue 24
        row(PodSecurity, "seccompProfile", "seccompProfile: {type: Unconfined}", Needs(Privileged)).at("seccompProfile.type"), // issue 24
        row(PodSecurity, "seccompProfile", "seccompProfile: {type: Localhost, localhostProfile: any.json}", Needs(Privileged)).at("seccompProfile.type"),
        row(PodSecurity, "seccompProfile", "seccompProfile: {type: RuntimeDefault}", Allowed),
        row(PodSecurity, "supplementalGroups", "supplementalGroups: [0]", Allowed),
        row(PodSecurity, "supplementalGroupsPolicy", "supplementalGroupsPolicy: Strict", Allowed),
        row(PodSecurity, "sysctls", "sysctls: [{name: kernel.core_pattern, value: '|/tmp/x'}]", Needs(Privileged)), // issue 24
        row(PodSecurity, "windowsOptions", "windowsOptions: {hostProcess: true}", Needs(Privileged)).at("windowsOptions.hostProcess"),
        row(PodSecurity, "windowsOptions", "windowsOptions: {runAsUserName: app}", Allowed),
        // Container (init and ephemeral containers have the same rules: see below).
        row(Container, "args", "args: [-f]", Allowed),
        row(Container, "command", "command: [/bin/sh]", Allowed),
        row(Container, "env", "env: [{name: A, value: b}, {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}]", Allowed),
        row(Container, "env", "env: [{name: A, valueFrom: {secretKeyRef: {name: s1, key: k}}}]", Allowed),
        row(Container, "env", "env: [{name: A, valueFrom: {secretKeyRef: {name: other, key: k}}}]", Refused).at("env[0].valueFrom.secretKeyRef.name"),
        row(Container, "env", "env: [{name: A, valueFrom: {configMapKeyRef: {name: other, key: k}}}]", Refused).at("env[0].valueFrom.configMapKeyRef.name"),
        row(Container, "envFrom", "envFrom: [{configMapRef: {name: c1}}, {secretRef: {name: s1}}]", Allowed),
        row(Container, "envFrom", "envFrom: [{secretRef: {name: other}}]", Refused).at("envFrom[0].secretRef.name"),
        row(Container, "image", "image: redis", Allowed),
        row(Container, "imagePullPolicy", "imagePullPolicy: Always", Allowed),
        row(Container, "lifecycle", "lifecycle: {postStart: {exec: {command: ['true']}}}", Allowed),
        row(Container, "lifecycle", "lifecycle: {preStop: {httpGet: {host: 169.254.169.254, path: /, port: 80}}}", Needs(Privileged)).at("lifecycle.preStop.httpGet.host"),
        row(Container, "livenessProbe", "livenessProbe: {httpGet: {path: /, port: 80}}", Allowed),
        row(Container, "livenessProbe", "livenessProbe: {httpGet: {host: 10.0.0.1, port: 80}}", Needs(Privileged)).at("livenessProbe.httpGet.host"),
        row(Container, "name", "name: main", Allowed),
        row(Container, "ports", "ports: [{containerPort: 80}]", Allowed),
        row(Container, "ports", "ports: [{containerPort: 80, hostPort: 8080}]", Needs(HostPorts)).at("hostPort 8080"),
        row(Container, "readinessProbe", "readinessProbe: {tcpSocket: {host: metadata.google.internal, port: 80}}", Needs(Privileged)).at("readinessProbe.tcpSocket.host"),
        row(Container, "resizePolicy", "resizePolicy: [{resourceName: cpu, restartPolicy: NotRequired}]", Allowed),
        row(Container, "resources", "resources: {limits: {cpu: '100000'}}", Bounded("resources: {limits: {cpu: 500m}}")).at("resources"), // issue 24
        row(Container, "resources", "resources: {requests: {memory: 1Ei}}", Bounded("resources: {requests: {memory: 1Gi}}")).at("resources"), // issue 24
        row(Container, "resources", "resources: {limits: {hugepages-2Mi: 1Ei}}", Bounded("resources: {limits: {hugepages-2Mi: 1Gi}}")).at("resources"),
        row(Container, "resources", "resources: {limits: {ephemeral-storage: 1Pi}}", Bounded("resources: {limits: {ephemeral-storage: 1Gi}}")).at("resources"),
        row(Container, "resources", "resources: {limits: {nvidia.com/gpu: '1'}}", Needs(Extended)).at("resources"),
        row(Container, "restartPolicy", "restartPolicy: Always", Allowed),
        row(Container, "securityContext", "securityContext: {runAsNonRoot: true}", Allowed),
        row(Container, "startupProbe", "startupProbe: {httpGet: {host: 127.0.0.1, port: 10250}}", Needs(Privileged)).at("startupProbe.httpGet.host"),
        row(Container, "stdin", "stdin: true", Allowed),
        row(Container, "stdinOnce", "stdinOnce: true", Allowed),
        row(Container, "terminationMessagePath", "terminationMessagePath: /tmp/end", Allowed),
        row(Container, "terminationMessagePolicy", "terminationMessagePolicy: FallbackToLogsOnError", Allowed),
        row(Container, "tty", "tty: true", Allowed),
        row(Container, "volumeDevices", "volumeDevices: [{name: data, devicePath: /dev/xvda}]", Allowed),
        row(Container, "volumeMounts", "volumeMounts: [{name: tmp, mountPath: /tmp}]", Allowed),
        row(Container, "volumeMounts", "volumeMounts: [{name: tmp, mountPath: /tmp, mountPropagation: Bidirectional}]", Needs(Privileged)).at("volumeMounts[0].mountPropagation"),
        row(Container, "workingDir", "workingDir: /app", Allowed),
        row(Init, "securityContext", "securityContext: {privileged: true}", Needs(Privileged)).at("securityContext.privileged"),
        row(Init, "resources", "resources: {limits: {memory: 1Ei}}", Bounded("resources: {limits: {memory: 1Gi}}")).at("resources"),
        row(Ephemeral, "securityContext", "securityContext: {capabilities: {add: [SYS_ADMIN]}}", Needs(Privileged)).at("securityContext.capabilities.add"),
        // SecurityContext (a container's).
        row(Security, "allowPrivilegeEscalation", "allowPrivilegeEscalation: true", Needs(Privileged)),
        row(Security, "appArmorProfile", "appArmorProfile: {type: Unconfined}", Needs(Privileged)).at("appArmorProfile.type"), // issue 24
        row(Security, "appArmorProfile", "appArmorProfile: {type: Localhost, localhostProfile: any}", Needs(Privileged)).at("appArmorProfile.type"),
        row(Security, "capabilities", "capabilities: {add: [SYS_ADMIN]}", Needs(Privileged)).at("capabilities.add"),
        row(Security, "capabilities", "capabilities: {drop: [ALL]}", Allowed),
        row(Security, "privileged", "privileged: true", Needs(Privileged)),
        row(Security, "procMount", "procMount: Unmasked", Needs(Privileged)),
        row(Security, "readOnlyRootFilesystem", "readOnlyRootFilesystem: true", Allowed),
        row(Security, "runAsGroup", "runAsGroup: 0", Allowed),
        row(Security, "runAsNonRoot", "runAsNonRoot: false", Allowed),
        row(Security, "runAsUser", "runAsUser: 0", Allowed),
        row(Security, "seLinuxOptions", "seLinuxOptions: {type: spc_t}", Needs(Privileged)), // issue 24
        row(Security, "seLinuxOptions", "seLinuxOptions: {level: 's0:c1,c2'}", Needs(Privileged)),
        row(Security, "seccompProfile", "seccompProfile: {type: Unconfined}", Needs(Privileged)).at("seccompProfile.type"), // issue 24
        row(Security, "windowsOptions", "windowsOptions: {hostProcess: true}", Needs(Privileged)).at("windowsOptions.hostProcess"),
        // Volume sources.
        row(Volume, "awsElasticBlockStore", "awsElasticBlockStore: {volumeID: vol-1}", Needs(External)),
        row(Volume, "azureDisk", "azureDisk: {diskName: d, diskURI: u}", Needs(External)),
        row(Volume, "azureFile", "azureFile: {secretName: s1, shareName: x}", Needs(External)),
        row(Volume, "cephfs", "cephfs: {monitors: [m]}", Needs(External)),
        row(Volume, "cinder", "cinder: {volumeID: v}", Needs(External)),
        row(Volume, "configMap", "configMap: {name: c1}", Allowed),
        row(Volume, "configMap", "configMap: {name: kube-root-ca.crt}", Allowed),
        row(Volume, "configMap", "configMap: {name: other}", Refused).at("configMap.name"),
        row(Volume, "csi", "csi: {driver: secrets-store.csi.k8s.io}", Needs(External)),
        row(Volume, "downwardAPI", "downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}", Allowed),
        row(Volume, "emptyDir", "emptyDir: {}", Allowed),
        row(Volume, "emptyDir", "emptyDir: {medium: Memory, sizeLimit: 1Ei}", Bounded("emptyDir: {medium: Memory, sizeLimit: 1Gi}")).at("emptyDir.sizeLimit"),
        row(Volume, "emptyDir", "emptyDir: {sizeLimit: 1Ei}", Bounded("emptyDir: {sizeLimit: 1Gi}")).at("emptyDir.sizeLimit"),
        row(Volume, "ephemeral", "ephemeral: {volumeClaimTemplate: {spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}}}", Allowed),
        row(Volume, "fc", "fc: {wwids: [x]}", Needs(External)),
        row(Volume, "flexVolume", "flexVolume: {driver: x}", Needs(External)),
        row(Volume, "flocker", "flocker: {datasetName: x}", Needs(External)),
        row(Volume, "gcePersistentDisk", "gcePersistentDisk: {pdName: x}", Needs(External)),
        // git runs on the node, as the kubelet.
        row(Volume, "gitRepo", "gitRepo: {repository: 'https://example.com/x.git'}", Needs(Privileged)),
        row(Volume, "glusterfs", "glusterfs: {endpoints: e, path: p}", Needs(External)),
        row(Volume, "hostPath", "hostPath: {path: /}", Needs(BindMounts)),
        row(Volume, "image", "image: {reference: busybox}", Allowed),
        row(Volume, "iscsi", "iscsi: {targetPortal: p, iqn: i, lun: 0}", Needs(External)),
        row(Volume, "name", "name: data", Allowed),
        row(Volume, "nfs", "nfs: {server: nas, path: /}", Needs(External)),
        row(Volume, "persistentVolumeClaim", "persistentVolumeClaim: {claimName: claim1}", Allowed),
        row(Volume, "persistentVolumeClaim", "persistentVolumeClaim: {claimName: data-db-0}", Allowed),
        row(Volume, "persistentVolumeClaim", "persistentVolumeClaim: {claimName: other}", Refused).at("persistentVolumeClaim.claimName"),
        row(Volume, "photonPersistentDisk", "photonPersistentDisk: {pdID: x}", Needs(External)),
        row(Volume, "portworxVolume", "portworxVolume: {volumeID: x}", Needs(External)),
        row(Volume, "projected", "projected: {sources: []}", Allowed),
        row(Volume, "quobyte", "quobyte: {registry: r, volume: v}", Needs(External)),
        row(Volume, "rbd", "rbd: {monitors: [m], image: i}", Needs(External)),
        row(Volume, "scaleIO", "scaleIO: {gateway: g, system: s, secretRef: {name: s1}}", Needs(External)),
        row(Volume, "secret", "secret: {secretName: s1}", Allowed),
        row(Volume, "secret", "secret: {secretName: other}", Refused).at("secret.secretName"),
        row(Volume, "storageos", "storageos: {volumeName: x}", Needs(External)),
        row(Volume, "vsphereVolume", "vsphereVolume: {volumePath: p}", Needs(External)),
        // Projected sources.
        row(Projection, "clusterTrustBundle", "clusterTrustBundle: {signerName: example.com/x, path: ca}", Needs(External)),
        row(Projection, "configMap", "configMap: {name: c1}", Allowed),
        row(Projection, "configMap", "configMap: {name: other}", Refused).at("configMap.name"),
        row(Projection, "downwardAPI", "downwardAPI: {items: []}", Allowed),
        row(Projection, "secret", "secret: {name: s1}", Allowed),
        row(Projection, "serviceAccountToken", "serviceAccountToken: {path: token}", Allowed),
        row(Projection, "serviceAccountToken", "serviceAccountToken: {path: token, audience: vault}", Needs(External)).at("serviceAccountToken.audience"),
        // ServiceSpec.
        row(Service, "allocateLoadBalancerNodePorts", "allocateLoadBalancerNodePorts: false", Allowed),
        row(Service, "clusterIP", "clusterIP: None", Allowed),
        row(Service, "clusterIP", "clusterIP: 10.96.0.10", Needs(Privileged)), // issue 24
        row(Service, "clusterIPs", "clusterIPs: [10.96.0.10]", Needs(Privileged)),
        row(Service, "externalIPs", "externalIPs: [1.2.3.4]", Needs(Privileged)),
        row(Service, "externalName", "externalName: kubernetes.default.svc", Needs(External)),
        row(Service, "externalTrafficPolicy", "{type: NodePort, externalTrafficPolicy: Local}", Allowed),
        row(Service, "healthCheckNodePort", "{type: LoadBalancer, externalTrafficPolicy: Local, healthCheckNodePort: 30999}", Needs(HostPorts)).at("healthCheckNodePort 30999"),
        row(Service, "internalTrafficPolicy", "internalTrafficPolicy: Local", Allowed),
        row(Service, "ipFamilies", "ipFamilies: [IPv4]", Allowed),
        row(Service, "ipFamilyPolicy", "ipFamilyPolicy: SingleStack", Allowed),
        row(Service, "loadBalancerClass", "{type: LoadBalancer, loadBalancerClass: example.com/lb}", Allowed),
        row(Service, "loadBalancerIP", "{type: LoadBalancer, loadBalancerIP: 1.2.3.4}", Needs(Privileged)), // issue 24
        row(Service, "loadBalancerSourceRanges", "{type: LoadBalancer, loadBalancerSourceRanges: [10.0.0.0/8]}", Allowed),
        row(Service, "ports", "ports: [{port: 80, targetPort: 8080}]", Allowed),
        row(Service, "ports", "{type: NodePort, ports: [{port: 80, nodePort: 30080}]}", Needs(HostPorts)).at("nodePort 30080"),
        row(Service, "publishNotReadyAddresses", "publishNotReadyAddresses: true", Allowed),
        row(Service, "selector", "selector: {app: web}", Allowed),
        row(Service, "sessionAffinity", "sessionAffinity: ClientIP", Allowed),
        row(Service, "sessionAffinityConfig", "sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}", Allowed),
        row(Service, "trafficDistribution", "trafficDistribution: PreferClose", Allowed),
        row(Service, "type", "type: LoadBalancer", Allowed),
        row(Service, "type", "{type: ExternalName, externalName: metadata.google.internal}", Needs(External)), // issue 24
        // PersistentVolumeClaimSpec.
        row(Claim, "accessModes", "accessModes: [ReadWriteMany]", Allowed),
        row(Claim, "dataSource", "dataSource: {kind: PersistentVolumeClaim, name: seed}", Allowed),
        row(Claim, "dataSource", "dataSource: {kind: PersistentVolumeClaim, name: someone-elses}", Refused).at("dataSource.name"),
        row(Claim, "dataSource", "dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: snap}", Needs(External)),
        row(Claim, "dataSourceRef", "dataSourceRef: {kind: PersistentVolumeClaim, name: data, namespace: other-tenant}", Refused).at("dataSourceRef.namespace"), // issue 24
        row(Claim, "resources", "resources: {requests: {storage: 1Pi}}", Bounded("resources: {requests: {storage: 10Gi}}")).at("resources.requests.storage"),
        row(Claim, "selector", "selector: {matchLabels: {tier: gold}}", Needs(External)),
        row(Claim, "storageClassName", "storageClassName: fast", Allowed),
        row(Claim, "volumeAttributesClassName", "volumeAttributesClassName: gold", Allowed),
        row(Claim, "volumeMode", "volumeMode: Block", Allowed),
        row(Claim, "volumeName", "volumeName: someone-elses", Needs(External)),
        // Claim templates, as claims.
        row(ClaimTemplate, "spec", "spec: {volumeName: someone-elses}", Needs(External)).at("spec.volumeName"), // issue 24
        row(ClaimTemplate, "spec", "spec: {dataSourceRef: {kind: PersistentVolumeClaim, name: x, namespace: other}}", Refused).at("spec.dataSourceRef.namespace"),
        row(ClaimTemplate, "spec", "spec: {resources: {requests: {storage: 1Ei}}}", Bounded("spec: {resources: {requests: {storage: 1Gi}}}")).at("spec.resources.requests.storage"),
        row(ClaimTemplate, "metadata", "metadata: {labels: {esm.owner: other}}", Refused).at("metadata.labels"),
        row(EphemeralClaim, "spec", "spec: {volumeName: someone-elses}", Needs(External)).at("spec.volumeName"), // issue 24
        row(EphemeralClaim, "spec", "spec: {resources: {requests: {storage: 1Ei}}}", Bounded("spec: {resources: {requests: {storage: 1Gi}}}")).at("spec.resources.requests.storage"),
        row(EphemeralClaim, "metadata", "metadata: {annotations: {esm.instance_id: other}}", Refused).at("metadata.annotations"),
        // Workloads, pod templates and metadata.
        row(Deployment, "spec", "spec: {replicas: 1000000}", Bounded("spec: {replicas: 3}")).at("spec.replicas"), // issue 24
        row(Job, "parallelism", "parallelism: 100000", Bounded("parallelism: 10")),
        row(Job, "completions", "completions: 100000", Bounded("completions: 10")),
        row(Deployment, "metadata", "metadata: {finalizers: [example.com/never]}", Refused).at("metadata.finalizers"),
        row(Deployment, "metadata", "metadata: {ownerReferences: [{apiVersion: v1, kind: Node, name: n1, uid: '1'}]}", Refused).at("metadata.ownerReferences"),
        row(Template, "metadata", "metadata: {labels: {esm.owner: other}}", Refused).at("metadata.labels"), // issue 24
        row(Template, "metadata", "metadata: {annotations: {esm.instance_id: other}}", Refused).at("metadata.annotations"),
        row(Template, "metadata", "metadata: {finalizers: [example.com/never]}", Refused).at("metadata.finalizers"),
        row(Template, "metadata", "metadata: {annotations: {container.apparmor.security.beta.kubernetes.io/web: unconfined}}", Needs(Privileged)).at("metadata.annotations"),
        row(Template, "metadata", "metadata: {annotations: {seccomp.security.alpha.kubernetes.io/pod: unconfined}}", Needs(Privileged)).at("metadata.annotations"),
        row(Template, "metadata", "metadata: {labels: {tier: web}, annotations: {example.com/note: x}}", Allowed),
    ]
}
