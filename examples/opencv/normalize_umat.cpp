// normalize_umat: clnorm inside an OpenCV pipeline, on OpenCV's own OpenCL context, queue and
// buffers (UMat), with no copies: imread, upload, ImageNet normalization by clnorm (u8 BGR in,
// float32 out), cv::GaussianBlur on the float32 UMat, imwrite.
//
//   normalize_umat IN OUT       the pipeline; OUT shows z in [-3, 3] as 0..255
//   normalize_umat --check DIR  the same on a generated DIR/input.png (and on a UMat ROI),
//                               comparing clnorm's result with float64; exit 1 on mismatch
//
// Exit 77 when OpenCV has no OpenCL device (OPENCV_OPENCL_DEVICE=":CPU:" picks PoCL's).
#include <clnorm/clnorm.h>

#include <opencv2/core.hpp>
#include <opencv2/core/ocl.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>

// ImageNet's mean and std, in OpenCV's BGR order (ImageNet lists them R, G, B).
static const double mean_bgr[3] = {0.406, 0.456, 0.485}, std_bgr[3] = {0.225, 0.224, 0.229};

static cl_mem buffer(const cv::UMat &u, cv::AccessFlag access)
{
    if (!u.isContinuous() || u.offset != 0) // clnorm takes whole buffers (or sub-buffers)
        throw std::runtime_error("UMat not continuous or at an offset");
    return static_cast<cl_mem>(u.handle(access));
}

// One clnorm context on OpenCV's default queue; released before OpenCV's context goes.
struct Normalizer {
    clnorm_context *ctx = nullptr;
    cv::UMat running_mean, running_var; // 1x3 float: 255 * mean, (255 * std)^2

    static void check(clnorm_status s, const clnorm_context *c, const char *call)
    {
        if (s != CLNORM_SUCCESS)
            throw std::runtime_error(std::string(call) + ": " + clnorm_status_string(s) + ": " +
                                     clnorm_context_last_error(c));
    }
    Normalizer()
    {
        auto queue = static_cast<cl_command_queue>(cv::ocl::Queue::getDefault().ptr());
        check(clnorm_context_create_from_queue(queue, &ctx), nullptr,
              "clnorm_context_create_from_queue");
        auto cv_context = static_cast<cl_context>(cv::ocl::Context::getDefault().ptr());
        if (clnorm_context_cl(ctx) != cv_context) {
            clnorm_context_release(ctx); // no destructor runs for a constructor that throws
            throw std::runtime_error("OpenCV's queue is not on its default context");
        }
        cv::Mat m(1, 3, CV_32F), v(1, 3, CV_32F);
        for (int c = 0; c < 3; ++c) {
            m.at<float>(c) = float(255 * mean_bgr[c]);
            v.at<float>(c) = float((255 * std_bgr[c]) * (255 * std_bgr[c]));
        }
        m.copyTo(running_mean);
        v.copyTo(running_var);
    }
    ~Normalizer() { clnorm_context_release(ctx); }
    Normalizer(const Normalizer &) = delete;
    Normalizer &operator=(const Normalizer &) = delete;

    // y = (x - 255 mean) / (255 std) per channel: BATCH, INFERENCE, on the running statistics.
    cv::UMat operator()(cv::UMat x)
    {
        CV_Assert(x.type() == CV_8UC3);
        if (!x.isContinuous() || x.offset != 0)
            x = x.clone(); // a ROI: one copy into a buffer of its own
        cv::UMat y(x.size(), CV_32FC3);
        clnorm_desc desc{};
        desc.kind = CLNORM_BATCH;
        desc.layout = CLNORM_NHWC; // OpenCV's interleaved pixels: [N][D][C]
        desc.dtype = CLNORM_U8;
        desc.y_dtype = CLNORM_Y_F32;
        desc.n = 1;
        desc.c = 3;
        desc.d = x.total();
        desc.eps = 0; // as torchvision's Normalize
        clnorm_buffers bufs{};
        bufs.x = buffer(x, cv::ACCESS_READ);
        bufs.y = buffer(y, cv::ACCESS_WRITE);
        bufs.running_mean = buffer(running_mean, cv::ACCESS_READ);
        bufs.running_var = buffer(running_var, cv::ACCESS_READ);
        clnorm_plan *plan = nullptr; // a real pipeline keeps one plan per image size
        check(clnorm_plan_create(ctx, &desc, &plan), ctx, "clnorm_plan_create");
        cl_event done = nullptr;
        clnorm_status s = clnorm_forward(plan, CLNORM_INFERENCE, &bufs, 0, nullptr, &done);
        clnorm_plan_release(plan);
        check(s, ctx, "clnorm_forward");
        clReleaseEvent(done); // OpenCV's queue is in-order: what it enqueues next runs after
        return y;
    }
};

// Largest difference between y and the float64 ImageNet normalization of x.
static double worst_error(const cv::Mat &x, const cv::Mat &y)
{
    double worst = 0;
    for (int r = 0; r < x.rows; ++r)
        for (int c = 0; c < x.cols; ++c)
            for (int k = 0; k < 3; ++k) {
                double ref = (x.at<cv::Vec3b>(r, c)[k] / 255.0 - mean_bgr[k]) / std_bgr[k];
                double err = std::fabs(y.at<cv::Vec3f>(r, c)[k] - ref) / (1 + std::fabs(ref));
                worst = std::fmax(worst, std::isnan(err) ? INFINITY : err);
            }
    return worst;
}

static int run(int argc, char **argv)
{
    bool check = argc == 3 && std::string(argv[1]) == "--check";
    if (argc != 3) {
        std::fprintf(stderr, "usage: normalize_umat IN OUT | normalize_umat --check DIR\n");
        return 2;
    }
    if (!cv::ocl::haveOpenCL() || !cv::ocl::Device::getDefault().available()) {
        std::printf("OpenCV has no OpenCL device: skipped\n");
        return 77;
    }
    cv::ocl::setUseOpenCL(true);
    std::printf("OpenCV OpenCL device: %s\n", cv::ocl::Device::getDefault().name().c_str());
    std::string in = argv[1], out = argv[2];
    if (check) { // an odd-sized image over the whole 0..255 range
        cv::Mat gen(123, 77, CV_8UC3);
        cv::randu(gen, 0, 256);
        in = out + "/input.png";
        out += "/output.png";
        cv::imwrite(in, gen);
    }
    cv::Mat bgr = cv::imread(in, cv::IMREAD_COLOR); // 8-bit, BGR
    if (bgr.empty()) {
        std::fprintf(stderr, "normalize_umat: %s: cannot read the image\n", in.c_str());
        return 1;
    }
    int status = 0;
    {
        Normalizer normalize; // in a scope: released before OpenCV's context
        cv::UMat x, z, blurred, shown;
        bgr.copyTo(x); // upload
        z = normalize(x);
        cv::GaussianBlur(z, blurred, cv::Size(5, 5), 1.5); // on OpenCV's queue, after clnorm's
        blurred.convertTo(shown, CV_8U, 255.0 / 6, 127.5);  // z in [-3, 3] to 0..255
        if (!cv::imwrite(out, shown)) {
            std::fprintf(stderr, "normalize_umat: %s: cannot write the image\n", out.c_str());
            return 1;
        }
        if (check) {
            cv::Rect roi(3, 2, bgr.cols - 7, bgr.rows - 5);
            double full = worst_error(bgr, z.getMat(cv::ACCESS_READ));
            double part = worst_error(bgr(roi), normalize(x(roi)).getMat(cv::ACCESS_READ));
            bool ok = full < 1e-5 && part < 1e-5 && cv::imread(out).size() == bgr.size();
            std::printf("clnorm vs float64: max relative error %.3g (image), %.3g (ROI): %s\n",
                        full, part, ok ? "ok" : "MISMATCH");
            status = ok ? 0 : 1;
        }
    }
    return status;
}

int main(int argc, char **argv)
{
    try {
        return run(argc, argv);
    } catch (const std::exception &e) { // clnorm's and OpenCV's errors
        std::fprintf(stderr, "normalize_umat: %s\n", e.what());
        return 1;
    }
}
