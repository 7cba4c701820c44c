"""Write the IPASC and PATATO fixture files with those projects' OWN writers.

Run twice (each project lives in its own environment):

    .venv/bin/python tests/data/make_fixtures.py ipasc      # needs pacfish
    /path/to/patato-venv/bin/python tests/data/make_fixtures.py patato   # needs patato 0.7

The data are deterministic so that tests/io/test_io.py can check exact values:
16 detectors on a ring of radius 20 mm, 256 samples at 20 MHz, c = 1510 m/s,
signal value = detector + 0.001 * sample + 100 * wavelength_index + 1000 * frame.
"""

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
N_DET, N_T, FS, C, R = 16, 256, 20e6, 1510.0, 0.02
WAVELENGTHS = np.array([700e-9, 800e-9])
N_FRAMES = 2


def values(det, t, wl, fr):
    return det + 0.001 * t + 100.0 * wl + 1000.0 * fr


def positions():
    th = 2 * np.pi * np.arange(N_DET) / N_DET
    return np.stack([R * np.cos(th), R * np.sin(th), np.zeros(N_DET)], axis=1)


def write_ipasc():
    import pacfish as pf

    det, t, wl, fr = np.meshgrid(np.arange(N_DET), np.arange(N_T), np.arange(2),
                                 np.arange(N_FRAMES), indexing="ij")
    data = values(det, t, wl, fr).astype(np.float32)  # [detectors, samples, wl, frames]
    acq = {
        pf.MetadataAcquisitionTags.UUID.tag: "oatomo-fixture",
        pf.MetadataAcquisitionTags.DATA_TYPE.tag: "float32",
        pf.MetadataAcquisitionTags.DIMENSIONALITY.tag: "time",
        pf.MetadataAcquisitionTags.SIZES.tag: np.asarray(data.shape),
        pf.MetadataAcquisitionTags.ENCODING.tag: "raw",
        pf.MetadataAcquisitionTags.COMPRESSION.tag: "none",
        pf.MetadataAcquisitionTags.AD_SAMPLING_RATE.tag: FS,
        pf.MetadataAcquisitionTags.SPEED_OF_SOUND.tag: C,
        pf.MetadataAcquisitionTags.ACQUISITION_WAVELENGTHS.tag: WAVELENGTHS,
    }
    creator = pf.DeviceMetaDataCreator()
    creator.set_general_information(uuid="oatomo-ring16",
                                    fov=np.array([-0.01, 0.01, -0.01, 0.01, 0, 0]))
    for p in positions():
        el = pf.DetectionElementCreator()
        el.set_detector_position(p)
        el.set_detector_orientation(-p / np.linalg.norm(p))
        el.set_detector_geometry_type("SPHERE")
        el.set_detector_geometry(np.asarray([1e-4]))
        creator.add_detection_element(el.get_dictionary())
    device = creator.finalize_device_meta_data()
    pa = pf.PAData(binary_time_series_data=data, meta_data_acquisition=acq,
                   meta_data_device=device)
    pf.write_data(str(HERE / "ipasc_ring16.hdf5"), pa)


def write_patato():
    import h5py
    from patato.io.hdf.hdf5_interface import HDF5Writer

    fr, wl, det, t = np.meshgrid(np.arange(N_FRAMES), np.arange(2), np.arange(N_DET),
                                 np.arange(N_T), indexing="ij")
    data = values(det, t, wl, fr).astype(np.float32)  # (frames, wavelengths, detectors, t)
    path = HERE / "patato_ring16.hdf5"
    with h5py.File(path, "w") as f:
        w = HDF5Writer(f)
        w.set_pa_data(data)
        w.set_sensor_geometry(positions())
        w.set_wavelengths(WAVELENGTHS)
        w.set_sampling_frequency(FS)
        w.set_speed_of_sound(C)
        w.set_scan_name("oatomo fixture")


if __name__ == "__main__":
    {"ipasc": write_ipasc, "patato": write_patato}[sys.argv[1]]()
