"""The shapes of the Kubernetes, KEDA and Prometheus Operator objects deploy/k8s uses,
as pydantic models that refuse unknown fields: a schema check that needs no cluster.

Field names and types follow the API references (apps/v1 Deployment, core/v1 PodSpec,
autoscaling/v2 HPA behavior, keda.sh/v1alpha1 ScaledObject and TriggerAuthentication,
monitoring.coreos.com/v1 PodMonitor). Only the parts these manifests can use are modelled,
completely enough that a misspelt or misplaced field fails (kubectl would drop or reject
it), a missing required one fails, and a number where the API wants a string fails
(KEDA's trigger metadata is a map of strings)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                                        max_length=63)]
PortName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                                            max_length=15)]
Quantity = Annotated[str, StringConstraints(pattern=r"^[0-9.]+(m|Ki|Mi|Gi|Ti|k|M|G)?$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class ObjectMeta(Strict):
    name: Name
    namespace: Name | None = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


# -- core/v1 ----------------------------------------------------------------------------
class KeySelector(Strict):
    name: Name
    key: str
    optional: bool | None = None


class EnvVarSource(Strict):
    secretKeyRef: KeySelector | None = None
    configMapKeyRef: KeySelector | None = None
    fieldRef: dict[str, str] | None = None


class EnvVar(Strict):
    name: str
    value: str | None = None
    valueFrom: EnvVarSource | None = None


class ContainerPort(Strict):
    containerPort: Annotated[int, Field(gt=0, lt=65536)]
    name: PortName | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] | None = None


class Resources(Strict):
    requests: dict[Literal["cpu", "memory", "ephemeral-storage"], Quantity] = {}
    limits: dict[Literal["cpu", "memory", "ephemeral-storage"], Quantity] = {}


class ExecAction(Strict):
    command: list[str]


class HTTPGetAction(Strict):
    path: str
    port: int | str
    scheme: Literal["HTTP", "HTTPS"] | None = None


class Probe(Strict):
    exec: ExecAction | None = None
    httpGet: HTTPGetAction | None = None
    initialDelaySeconds: int | None = None
    periodSeconds: int | None = None
    timeoutSeconds: int | None = None
    failureThreshold: int | None = None
    successThreshold: int | None = None


class VolumeMount(Strict):
    name: Name
    mountPath: str
    readOnly: bool | None = None
    subPath: str | None = None


class LifecycleHandler(Strict):
    exec: ExecAction | None = None


class Lifecycle(Strict):
    preStop: LifecycleHandler | None = None


class Container(Strict):
    name: Name
    image: str
    command: list[str] | None = None
    args: list[str] | None = None
    env: list[EnvVar] = []
    ports: list[ContainerPort] = []
    resources: Resources | None = None
    livenessProbe: Probe | None = None
    readinessProbe: Probe | None = None
    startupProbe: Probe | None = None
    volumeMounts: list[VolumeMount] = []
    lifecycle: Lifecycle | None = None
    imagePullPolicy: Literal["Always", "IfNotPresent", "Never"] | None = None


class PodSecurityContext(Strict):
    runAsNonRoot: bool | None = None
    runAsUser: int | None = None
    runAsGroup: int | None = None
    fsGroup: int | None = None


class Volume(Strict):
    name: Name
    emptyDir: dict[str, Any] | None = None
    persistentVolumeClaim: dict[str, Any] | None = None
    secret: dict[str, Any] | None = None
    configMap: dict[str, Any] | None = None


class PodSpec(Strict):
    containers: Annotated[list[Container], Field(min_length=1)]
    terminationGracePeriodSeconds: int | None = None
    securityContext: PodSecurityContext | None = None
    volumes: list[Volume] = []
    serviceAccountName: str | None = None
    nodeSelector: dict[str, str] = {}


class TemplateMeta(Strict):
    labels: dict[str, str]
    annotations: dict[str, str] = {}


class PodTemplate(Strict):
    metadata: TemplateMeta
    spec: PodSpec


class LabelSelectorRequirement(Strict):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = []


class LabelSelector(Strict):
    matchLabels: dict[str, str] = {}
    matchExpressions: list[LabelSelectorRequirement] = []


# -- apps/v1 ----------------------------------------------------------------------------
class DeploymentSpec(Strict):
    replicas: int | None = None
    selector: LabelSelector
    template: PodTemplate
    strategy: dict[str, Any] | None = None
    minReadySeconds: int | None = None
    revisionHistoryLimit: int | None = None


class Deployment(Strict):
    apiVersion: Literal["apps/v1"]
    kind: Literal["Deployment"]
    metadata: ObjectMeta
    spec: DeploymentSpec


class ServicePort(Strict):
    name: str | None = None
    port: int
    targetPort: int | str | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] | None = None


class ServiceSpec(Strict):
    selector: dict[str, str]
    ports: list[ServicePort]
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] | None = None


class Service(Strict):
    apiVersion: Literal["v1"]
    kind: Literal["Service"]
    metadata: ObjectMeta
    spec: ServiceSpec


# -- autoscaling/v2 behavior (inside KEDA's advanced.horizontalPodAutoscalerConfig) ------
class ScalingPolicy(Strict):
    type: Literal["Pods", "Percent"]
    value: Annotated[int, Field(gt=0)]
    periodSeconds: Annotated[int, Field(gt=0, le=1800)]


class ScalingRules(Strict):
    stabilizationWindowSeconds: Annotated[int, Field(ge=0, le=3600)] | None = None
    selectPolicy: Literal["Max", "Min", "Disabled"] | None = None
    policies: list[ScalingPolicy] = []


class HPABehavior(Strict):
    scaleUp: ScalingRules | None = None
    scaleDown: ScalingRules | None = None


# -- keda.sh/v1alpha1 -------------------------------------------------------------------
class ScaleTargetRef(Strict):
    name: Name
    apiVersion: str | None = None
    kind: str | None = None
    envSourceContainerName: str | None = None


class HPAConfig(Strict):
    name: str | None = None
    behavior: HPABehavior | None = None


class Advanced(Strict):
    restoreToOriginalReplicaCount: bool | None = None
    horizontalPodAutoscalerConfig: HPAConfig | None = None


class Fallback(Strict):
    failureThreshold: Annotated[int, Field(ge=1)]
    replicas: Annotated[int, Field(ge=1)]


class AuthenticationRef(Strict):
    name: Name
    kind: Literal["TriggerAuthentication", "ClusterTriggerAuthentication"] | None = None


class PrometheusMetadata(Strict):
    """KEDA's prometheus scaler: every value a string."""

    serverAddress: str
    query: str
    threshold: str
    activationThreshold: str | None = None
    namespace: str | None = None
    customHeaders: str | None = None
    ignoreNullValues: Literal["true", "false"] | None = None
    unsafeSsl: Literal["true", "false"] | None = None
    authModes: str | None = None
    queryParameters: str | None = None


class Trigger(Strict):
    type: str
    name: str | None = None
    metadata: dict[str, str]
    authenticationRef: AuthenticationRef | None = None
    metricType: Literal["AverageValue", "Value", "Utilization"] | None = None
    useCachedMetrics: bool | None = None


class ScaledObjectSpec(Strict):
    scaleTargetRef: ScaleTargetRef
    triggers: Annotated[list[Trigger], Field(min_length=1)]
    pollingInterval: int | None = None
    cooldownPeriod: int | None = None
    initialCooldownPeriod: int | None = None
    idleReplicaCount: int | None = None
    minReplicaCount: int | None = None
    maxReplicaCount: int | None = None
    fallback: Fallback | None = None
    advanced: Advanced | None = None


class ScaledObject(Strict):
    apiVersion: Literal["keda.sh/v1alpha1"]
    kind: Literal["ScaledObject"]
    metadata: ObjectMeta
    spec: ScaledObjectSpec


class SecretTargetRef(Strict):
    parameter: str
    name: Name
    key: str


class TriggerAuthenticationSpec(Strict):
    secretTargetRef: list[SecretTargetRef] = []
    env: list[dict[str, str]] = []


class TriggerAuthentication(Strict):
    apiVersion: Literal["keda.sh/v1alpha1"]
    kind: Literal["TriggerAuthentication"]
    metadata: ObjectMeta
    spec: TriggerAuthenticationSpec


# -- monitoring.coreos.com/v1 -----------------------------------------------------------
class RelabelConfig(Strict):
    sourceLabels: list[str] = []
    separator: str | None = None
    targetLabel: str | None = None
    regex: str | None = None
    replacement: str | None = None
    action: Literal["replace", "keep", "drop", "labelmap", "labeldrop", "labelkeep",
                    "hashmod", "lowercase", "uppercase"] | None = None


class PodMetricsEndpoint(Strict):
    port: PortName
    path: str | None = None
    interval: Annotated[str, StringConstraints(pattern=r"^[0-9]+(ms|s|m|h)$")] | None = None
    scheme: Literal["http", "https"] | None = None
    relabelings: list[RelabelConfig] = []
    metricRelabelings: list[RelabelConfig] = []
    basicAuth: dict[str, Any] | None = None


class PodMonitorSpec(Strict):
    selector: LabelSelector
    podMetricsEndpoints: Annotated[list[PodMetricsEndpoint], Field(min_length=1)]
    jobLabel: str | None = None
    namespaceSelector: dict[str, Any] | None = None


class PodMonitor(Strict):
    apiVersion: Literal["monitoring.coreos.com/v1"]
    kind: Literal["PodMonitor"]
    metadata: ObjectMeta
    spec: PodMonitorSpec


KINDS: dict[str, type[Strict]] = {
    "Deployment": Deployment, "Service": Service, "ScaledObject": ScaledObject,
    "TriggerAuthentication": TriggerAuthentication, "PodMonitor": PodMonitor,
}
